"""Labelled partition-filter cases: (sql, unfiltered tables, why).

Partitioned tables of the platform (``PARTITIONS``): box scores by ``game_date`` (DATE),
scraped props by ``scraped_at`` (TIMESTAMP), Odds API props by ingestion time
(``_PARTITIONTIME``), game lines by ``snapshot_date``, predictions by ``game_date``.
``nba.players`` and ``staging.*`` are not partitioned. Default project ``sportsdata``,
default dataset ``nba``. The expected sets use short ``dataset.table`` names.
"""

from __future__ import annotations

PROJECT = "sportsdata"
DATASET = "nba"
PARTITIONS = {
    "sportsdata.nba.player_game_summary": "game_date",
    "sportsdata.raw.bettingpros_props": "scraped_at",
    "sportsdata.raw.odds_api_player_props": "_PARTITIONTIME",
    "sportsdata.raw.odds_api_game_lines": "snapshot_date",
    "sportsdata.predictions.player_prop_predictions": "game_date",
}
PGS = "nba.player_game_summary"
BP = "raw.bettingpros_props"
ODDS = "raw.odds_api_player_props"
LINES = "raw.odds_api_game_lines"
PRED = "predictions.player_prop_predictions"

Case = tuple[str, frozenset[str], str]


def _u(*names: str) -> frozenset[str]:
    return frozenset(names)


NONE = _u()

CASES: list[Case] = [
    # --- the plain shapes -------------------------------------------------------------
    (f"SELECT * FROM {PGS} WHERE game_date = @d", NONE, "= parameter"),
    (f"SELECT * FROM {PGS} WHERE game_date = '2025-01-15'", NONE, "= string literal"),
    (f"SELECT * FROM {PGS} WHERE game_date = DATE '2025-01-15'", NONE, "= DATE literal"),
    (f"SELECT * FROM {PGS}", _u(PGS), "no WHERE"),
    (f"SELECT * FROM {PGS} WHERE player_lookup = 'lebronjames'", _u(PGS), "other column"),
    (f"SELECT * FROM {PGS} WHERE game_date >= @start AND game_date < @end", NONE, "range"),
    (f"SELECT * FROM {PGS} WHERE game_date BETWEEN @a AND @b", NONE, "BETWEEN"),
    (
        f"SELECT * FROM {PGS} WHERE game_date IN ('2025-01-14', '2025-01-15')",
        NONE,
        "IN list",
    ),
    (f"SELECT * FROM {PGS} WHERE game_date IN UNNEST(@dates)", NONE, "IN UNNEST(param)"),
    (
        f"SELECT * FROM {PGS} WHERE game_date > DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY)",
        NONE,
        "constant expression",
    ),
    (f"SELECT * FROM {PGS} WHERE @d = game_date", NONE, "constant on the left"),
    (f"SELECT * FROM {PGS} WHERE game_date IS NOT NULL", _u(PGS), "IS NOT NULL: not a filter"),
    (f"SELECT * FROM {PGS} WHERE NOT game_date < @d", NONE, "NOT (range) is still a range"),
    (f"SELECT * FROM {PGS} WHERE NOT (game_date = @d)", _u(PGS), "NOT (=) prunes nothing"),
    (f"SELECT * FROM {PGS} WHERE game_date != @d", _u(PGS), "!= prunes nothing"),
    (
        f"SELECT * FROM {PGS} WHERE game_date = @d OR player_lookup = 'x'",
        _u(PGS),
        "a disjunct without the constraint voids it",
    ),
    (
        f"SELECT * FROM {PGS} WHERE (game_date = @d AND points > 30) OR (game_date = @e)",
        NONE,
        "every disjunct constrained",
    ),
    (
        f"SELECT * FROM {PGS} WHERE points > 30 AND (game_date = @d OR game_date = @e)",
        NONE,
        "AND of an OR of constraints",
    ),
    (
        f"SELECT * FROM {PGS} WHERE FORMAT_DATE('%Y', game_date) = '2025'",
        _u(PGS),
        "the column is not isolated",
    ),
    (
        f"SELECT * FROM {PGS} WHERE game_date = (SELECT MAX(game_date) FROM {PGS})",
        _u(PGS),
        "comparison with a subquery: not a filter (and the subquery scans all)",
    ),
    # --- names: aliases, backticks, defaults, case ------------------------------------
    (
        "SELECT s.points FROM `sportsdata.nba.player_game_summary` AS s WHERE s.game_date = @d",
        NONE,
        "backticks + alias",
    ),
    ("SELECT * FROM `sportsdata`.nba.`player_game_summary` s", _u(PGS), "quoted parts"),
    (
        "select * from player_game_summary where GAME_DATE = @d",
        NONE,
        "default dataset, upper-case column",
    ),
    ("SELECT * FROM player_game_summary", _u(PGS), "default dataset, unfiltered"),
    (
        "SELECT * FROM nba.player_game_summary s WHERE x.game_date = @d",
        _u(PGS),
        "qualified by another name: not this table's column",
    ),
    # --- TIMESTAMP and ingestion-time partitions --------------------------------------
    (f"SELECT * FROM {BP} WHERE DATE(scraped_at) = CURRENT_DATE()", NONE, "DATE(ts)"),
    (
        f"SELECT * FROM {BP} WHERE TIMESTAMP_TRUNC(scraped_at, DAY) = TIMESTAMP(@d)",
        NONE,
        "TIMESTAMP_TRUNC(ts)",
    ),
    (
        f"SELECT * FROM {BP} WHERE DATE(scraped_at, 'America/New_York') = @d",
        _u(BP),
        "DATE(ts, time zone): shifted, not pruned",
    ),
    (f"SELECT * FROM {BP} WHERE scraped_at > TIMESTAMP(@since)", NONE, "ts range"),
    (
        f"SELECT * FROM {BP} WHERE EXTRACT(DATE FROM scraped_at) = @d",
        NONE,
        "EXTRACT(DATE FROM ts) is DATE(ts)",
    ),
    (f"SELECT * FROM {BP} WHERE SAFE_CAST(scraped_at AS DATE) = @d", NONE, "CAST(ts AS DATE)"),
    (
        f"SELECT * FROM {PGS} WHERE CAST(game_date AS STRING) = '2025-01-15'",
        _u(PGS),
        "CAST(d AS STRING): not order-preserving, not a filter",
    ),
    (
        f"SELECT * FROM {PGS} WHERE EXTRACT(YEAR FROM game_date) = 2025",
        _u(PGS),
        "EXTRACT(YEAR …): the column is not isolated",
    ),
    (f"SELECT * FROM {ODDS} WHERE _PARTITIONTIME = TIMESTAMP(@d)", NONE, "_PARTITIONTIME"),
    (f"SELECT * FROM {ODDS} WHERE _PARTITIONDATE = @d", NONE, "_PARTITIONDATE counts"),
    (
        f"SELECT * FROM {ODDS} o WHERE DATE(o._PARTITIONTIME) BETWEEN @a AND @b",
        NONE,
        "DATE(_PARTITIONTIME)",
    ),
    (
        f"SELECT * FROM {ODDS} WHERE commence_time > @d",
        _u(ODDS),
        "ingestion-time table, filter on a data column",
    ),
    # --- scopes: CTEs, subqueries, UNION ----------------------------------------------
    (
        f"WITH g AS (SELECT * FROM {PGS} WHERE game_date = @d) SELECT * FROM g",
        NONE,
        "filter inside the CTE",
    ),
    (
        f"WITH g AS (SELECT * FROM {PGS}) SELECT * FROM g WHERE game_date = @d",
        _u(PGS),
        "filter only in the outer query: judged in its own scope",
    ),
    (
        f"SELECT * FROM (SELECT * FROM {PGS} WHERE game_date = @d) t WHERE t.points > 20",
        NONE,
        "filtered subquery in FROM",
    ),
    (
        f"SELECT * FROM (SELECT * FROM {PGS}) t WHERE t.game_date = @d",
        _u(PGS),
        "subquery in FROM, filter outside",
    ),
    (
        f"SELECT * FROM {PRED} WHERE game_date = @d AND player_lookup IN "
        f"(SELECT player_lookup FROM {PGS} WHERE game_date = @d AND points > 30)",
        NONE,
        "IN (subquery) in WHERE, both filtered",
    ),
    (
        f"SELECT * FROM {PRED} WHERE game_date = @d AND player_lookup IN "
        f"(SELECT player_lookup FROM {PGS} WHERE points > 30)",
        _u(PGS),
        "IN (subquery) whose scan is unfiltered",
    ),
    (
        f"SELECT * FROM {PRED} p WHERE p.game_date = @d AND EXISTS "
        f"(SELECT 1 FROM {PGS} s WHERE s.player_lookup = p.player_lookup AND s.game_date = @d)",
        NONE,
        "correlated EXISTS, both filtered",
    ),
    (
        f"SELECT player_lookup FROM {PGS} WHERE game_date = @d "
        f"UNION ALL SELECT player_lookup FROM {PGS}",
        _u(PGS),
        "one UNION branch unfiltered",
    ),
    (
        f"SELECT player_lookup FROM {PGS} WHERE game_date = @d "
        f"UNION DISTINCT SELECT player_lookup FROM {PRED} WHERE game_date = @d",
        NONE,
        "every UNION branch filtered",
    ),
    # --- joins ------------------------------------------------------------------------
    (
        f"SELECT * FROM {PGS} s JOIN {PRED} p ON p.player_lookup = s.player_lookup "
        "AND p.game_date = s.game_date WHERE s.game_date = @d",
        _u(PRED),
        "join equality on the partition column is not a filter for the other side",
    ),
    (
        f"SELECT * FROM {PGS} s JOIN {PRED} p USING (player_lookup, game_date) "
        "WHERE s.game_date = @d AND p.game_date = @d",
        NONE,
        "both sides filtered in WHERE",
    ),
    (
        f"SELECT * FROM {PGS} s JOIN {PRED} p ON p.player_lookup = s.player_lookup "
        "AND p.game_date = @d WHERE s.game_date = @d",
        NONE,
        "INNER JOIN: a constant in ON filters the joined side",
    ),
    (
        f"SELECT * FROM nba.players pl LEFT JOIN {PGS} s ON s.player_lookup = pl.player_lookup "
        "AND s.game_date = @d",
        NONE,
        "LEFT JOIN: a constant in ON filters the joined (right) side",
    ),
    (
        f"SELECT * FROM {PGS} s LEFT JOIN nba.players pl ON pl.player_lookup = s.player_lookup "
        "AND s.game_date = @d",
        _u(PGS),
        "LEFT JOIN: ON cannot filter the preserved (left) side",
    ),
    (
        f"SELECT * FROM {PGS} s FULL JOIN {PRED} p ON p.player_lookup = s.player_lookup "
        "AND p.game_date = @d AND s.game_date = @d",
        _u(PGS, PRED),
        "FULL JOIN: ON filters neither side",
    ),
    (
        f"SELECT * FROM {PGS} a, {PGS} b "
        "WHERE a.game_date = @d AND a.player_lookup = b.player_lookup",
        _u(PGS),
        "self join: the second scan is unfiltered",
    ),
    (
        f"SELECT * FROM {LINES} l, UNNEST(l.outcomes) o WHERE l.snapshot_date = @d",
        NONE,
        "UNNEST alias is not a table",
    ),
    # --- DML targets and sources ------------------------------------------------------
    (f"UPDATE {PRED} SET is_active = FALSE WHERE game_date = @d", NONE, "UPDATE filtered"),
    (f"UPDATE {PRED} SET is_active = FALSE WHERE model_version = 'v6'", _u(PRED), "UPDATE"),
    (
        f"UPDATE {PGS} t SET minutes = s.minutes FROM staging.minutes_fix s "
        "WHERE t.player_lookup = s.player_lookup AND t.game_date = s.game_date",
        _u(PGS),
        "UPDATE … FROM: join equality only",
    ),
    (f"DELETE FROM {LINES} WHERE snapshot_date < '2024-01-01'", NONE, "DELETE filtered"),
    (f"DELETE {LINES} WHERE bookmaker = 'defunct'", _u(LINES), "DELETE unfiltered"),
    (
        f"INSERT INTO {PRED} SELECT * FROM staging.prediction_batch",
        NONE,
        "INSERT target is written, not scanned",
    ),
    (
        f"INSERT INTO backfill.pgs SELECT * FROM {PGS}",
        _u(PGS),
        "INSERT … SELECT source unfiltered",
    ),
    (
        f"MERGE {PGS} T USING staging.box_scores S "
        "ON T.player_lookup = S.player_lookup AND T.game_date = S.game_date "
        "WHEN MATCHED THEN UPDATE SET points = S.pts WHEN NOT MATCHED THEN INSERT ROW",
        _u(PGS),
        "MERGE ON T.d = S.d is not a filter",
    ),
    (
        f"MERGE {PGS} T USING staging.box_scores S "
        "ON T.player_lookup = S.player_lookup AND T.game_date = @d "
        "WHEN MATCHED THEN UPDATE SET points = S.pts",
        NONE,
        "MERGE ON with a parameter",
    ),
    (
        f"MERGE {PRED} T USING staging.prediction_batch S ON T.prediction_id = S.prediction_id "
        "WHEN MATCHED AND T.game_date >= @d THEN UPDATE SET predicted_value = S.predicted_value "
        "WHEN NOT MATCHED THEN INSERT ROW",
        NONE,
        "constant in the only WHEN that reads the target",
    ),
    (
        f"MERGE {PRED} T USING staging.prediction_batch S ON T.prediction_id = S.prediction_id "
        "WHEN MATCHED AND T.game_date >= @d THEN UPDATE SET predicted_value = S.predicted_value "
        "WHEN NOT MATCHED BY SOURCE THEN DELETE",
        _u(PRED),
        "an unconditioned NOT MATCHED BY SOURCE reads the whole target",
    ),
    (
        f"MERGE {LINES} t USING staging.odds_lines s ON FALSE "
        "WHEN NOT MATCHED BY SOURCE AND t.snapshot_date = @d THEN DELETE "
        "WHEN NOT MATCHED THEN INSERT ROW",
        NONE,
        "partition replace idiom: ON FALSE + constant in BY SOURCE",
    ),
    (
        f"MERGE {PGS} T USING (SELECT * FROM {PRED} WHERE game_date = @d) S "
        "ON T.player_lookup = S.player_lookup AND T.game_date = @d "
        "WHEN MATCHED THEN UPDATE SET points = S.predicted_value",
        NONE,
        "MERGE source subquery filtered",
    ),
    (
        f"MERGE {PGS} T USING {PRED} S "
        "ON T.player_lookup = S.player_lookup AND T.game_date = @d "
        "WHEN MATCHED THEN UPDATE SET points = S.predicted_value",
        _u(PRED),
        "MERGE source table without a constant of its own",
    ),
    # --- DDL, views, exports ----------------------------------------------------------
    (
        f"CREATE OR REPLACE TABLE backfill.pgs_2024 AS SELECT * FROM {PGS} "
        "WHERE game_date BETWEEN '2024-01-01' AND '2024-12-31'",
        NONE,
        "CTAS filtered",
    ),
    (f"CREATE TABLE backfill.all_pgs AS SELECT * FROM {PGS}", _u(PGS), "CTAS unfiltered"),
    (
        f"CREATE VIEW analytics.v_all_pgs AS SELECT * FROM {PGS}",
        NONE,
        "a view's body is stored, not read",
    ),
    (
        f"CREATE MATERIALIZED VIEW analytics.mv AS SELECT game_date, COUNT(*) n FROM {PGS} "
        "GROUP BY 1",
        _u(PGS),
        "a materialized view is built by reading its base",
    ),
    (
        f"EXPORT DATA OPTIONS (uri = 'gs://b/*.csv', format = 'CSV') AS SELECT * FROM {BP}",
        _u(BP),
        "EXPORT DATA unfiltered",
    ),
    (f"TRUNCATE TABLE {PGS}", NONE, "TRUNCATE reads nothing"),
    (f"ALTER TABLE {PGS} SET OPTIONS (require_partition_filter = TRUE)", NONE, "ALTER"),
    # --- scripts ----------------------------------------------------------------------
    (
        f"DECLARE d DATE DEFAULT CURRENT_DATE(); SELECT * FROM {PGS} WHERE game_date = d;",
        NONE,
        "script variable is a constant",
    ),
    (
        f"DECLARE d DATE DEFAULT (SELECT MAX(game_date) FROM {PGS}); "
        f"SELECT * FROM {PGS} WHERE game_date = d;",
        _u(PGS),
        "the DECLARE's own scan is unfiltered",
    ),
    (
        f"BEGIN SELECT * FROM {PGS} WHERE game_date = @d; SELECT * FROM {BP}; END;",
        _u(BP),
        "BEGIN … END: every statement judged",
    ),
    (
        f"IF (SELECT COUNT(*) FROM {ODDS} WHERE _PARTITIONDATE = @d) > 0 THEN "
        f"DELETE FROM {PRED} WHERE game_date = @d; ELSE SELECT * FROM {LINES}; END IF;",
        _u(LINES),
        "IF condition and branches judged",
    ),
    (
        f"FOR r IN (SELECT DISTINCT game_date FROM staging.box_scores) DO "
        f"DELETE FROM {PGS} WHERE game_date = r.game_date; END FOR;",
        NONE,
        "FOR loop variable field is a constant",
    ),
    (
        f"CASE WHEN @full THEN SELECT * FROM {PRED}; "
        f"WHEN (SELECT COUNT(*) FROM {LINES} WHERE snapshot_date = @d) > 0 THEN "
        f"SELECT * FROM {PGS} WHERE game_date = @d; END CASE;",
        _u(PRED),
        "procedural CASE: WHEN conditions and branches judged",
    ),
    (
        f"WHILE (SELECT COUNT(*) FROM {PGS}) > 0 DO SELECT 1; END WHILE;",
        _u(PGS),
        "WHILE condition scans",
    ),
    (
        "SET @@dataset_id = 'raw'; SELECT * FROM bettingpros_props WHERE scraped_at > @t; "
        "SELECT * FROM odds_api_game_lines;",
        _u(LINES),
        "SET @@dataset_id changes the default dataset of later statements",
    ),
    (
        f"CREATE PROCEDURE nba.p(d DATE) BEGIN SELECT * FROM {PGS}; END",
        NONE,
        "a procedure body is stored, not read",
    ),
    (
        f"SELEC * FROM {PGS}",
        NONE,
        "unparseable: no unfiltered claim",
    ),
]
