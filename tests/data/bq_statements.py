"""Labelled BigQuery statements in the style of the sports-data platform.

Each entry: (sql, statement_type, timeout_class, tables or None when not asserted).
Labels follow BigQuery's ``statementType`` and the tracker's timeout classes (issue 4).
Default project ``sportsdata``; no default dataset unless the test says so.
"""

from __future__ import annotations

PROJECT = "sportsdata"

Labelled = tuple[str, str, str, frozenset[str] | None]


def _t(*names: str) -> frozenset[str]:
    return frozenset(f"{PROJECT}.{n}" if n.count(".") == 1 else n for n in names)


STATEMENTS: list[Labelled] = [
    # --- reads -----------------------------------------------------------------------
    (
        "SELECT player_lookup, points, rebounds, assists FROM nba.player_game_summary "
        "WHERE game_date = @game_date",
        "SELECT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        "select * from `sportsdata.nba.player_game_summary` "
        "where game_date = '2025-01-15' limit 10",
        "SELECT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        """-- props the model should price today
        WITH latest AS (
          SELECT player_lookup, market, line_value, bookmaker,
                 ROW_NUMBER() OVER (PARTITION BY player_lookup, market, bookmaker
                                    ORDER BY scraped_at DESC) AS rn
          FROM `sportsdata.raw.bettingpros_props`
          WHERE DATE(scraped_at) = @d
        )
        SELECT * FROM latest WHERE rn = 1""",
        "SELECT",
        "read",
        _t("raw.bettingpros_props"),
    ),
    (
        "SELECT g.game_id, g.home_team, g.away_team, l.spread, l.total "
        "FROM nba.schedule g LEFT JOIN raw.odds_api_game_lines l "
        "ON l.game_id = g.game_id AND l.snapshot_date = @d WHERE g.game_date = @d",
        "SELECT",
        "read",
        _t("nba.schedule", "raw.odds_api_game_lines"),
    ),
    (
        "# hash comment first\nSELECT COUNT(*) FROM raw.odds_api_player_props "
        "WHERE _PARTITIONDATE = CURRENT_DATE('America/New_York')",
        "SELECT",
        "read",
        _t("raw.odds_api_player_props"),
    ),
    (
        "/* block comment */ SELECT p.player_lookup, AVG(s.points) AS ppg\n"
        "FROM nba.players AS p\nJOIN nba.player_game_summary AS s USING (player_lookup)\n"
        "WHERE s.game_date BETWEEN DATE_SUB(@d, INTERVAL 30 DAY) AND @d\nGROUP BY 1\n"
        "HAVING COUNT(*) >= 5\nORDER BY ppg DESC;",
        "SELECT",
        "read",
        _t("nba.players", "nba.player_game_summary"),
    ),
    (
        "SELECT team_abbr, SUM(points) pts FROM analytics.team_offense_game_summary "
        "WHERE game_date >= '2024-10-22' GROUP BY team_abbr "
        "UNION ALL SELECT 'LEAGUE', SUM(points) FROM analytics.team_offense_game_summary "
        "WHERE game_date >= '2024-10-22'",
        "SELECT",
        "read",
        _t("analytics.team_offense_game_summary"),
    ),
    (
        "SELECT * FROM predictions.player_prop_predictions "
        "WHERE game_date = @d QUALIFY ROW_NUMBER() OVER "
        "(PARTITION BY player_lookup ORDER BY created_at DESC) = 1",
        "SELECT",
        "read",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "SELECT s.player_lookup, ARRAY_AGG(STRUCT(s.game_date, s.points) "
        "ORDER BY s.game_date DESC LIMIT 10) AS last10 FROM nba.player_game_summary s "
        "WHERE s.game_date > DATE_SUB(CURRENT_DATE(), INTERVAL 60 DAY) GROUP BY 1",
        "SELECT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        "SELECT p.*, inj.status FROM predictions.player_prop_predictions p "
        "LEFT JOIN (SELECT player_lookup, status FROM raw.nba_injury_report "
        "WHERE report_date = @d) inj USING (player_lookup) WHERE p.game_date = @d",
        "SELECT",
        "read",
        _t("predictions.player_prop_predictions", "raw.nba_injury_report"),
    ),
    (
        "SELECT game_id, bookmaker, outcome.name, outcome.price FROM raw.odds_api_game_lines, "
        "UNNEST(outcomes) AS outcome WHERE snapshot_date = @d",
        "SELECT",
        "read",
        _t("raw.odds_api_game_lines"),
    ),
    (
        "SELECT table_name, partition_id, total_rows "
        "FROM nba.INFORMATION_SCHEMA.PARTITIONS WHERE table_name = 'player_game_summary'",
        "SELECT",
        "read",
        _t("sportsdata.nba.INFORMATION_SCHEMA.PARTITIONS"),
    ),
    (
        "SELECT job_id, total_bytes_billed FROM `region-us`.INFORMATION_SCHEMA.JOBS_BY_PROJECT "
        "WHERE creation_time > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)",
        "SELECT",
        "read",
        _t("sportsdata.region-us.INFORMATION_SCHEMA.JOBS_BY_PROJECT"),
    ),
    (
        "SELECT * FROM `sportsdata.raw.bdl_box_scores_*` WHERE _TABLE_SUFFIX BETWEEN '20250101' "
        "AND '20250131'",
        "SELECT",
        "read",
        _t("raw.bdl_box_scores_*"),
    ),
    (
        "SELECT * FROM nba.player_game_summary FOR SYSTEM_TIME AS OF "
        "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR) WHERE game_date = @d",
        "SELECT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        "WITH recent AS (SELECT * FROM nba.player_game_summary WHERE game_date > @since), "
        "lines AS (SELECT * FROM raw.odds_api_player_props WHERE _PARTITIONTIME >= "
        "TIMESTAMP(@since)) SELECT r.player_lookup, COUNTIF(r.points > l.line) AS overs "
        "FROM recent r JOIN lines l USING (player_lookup) GROUP BY 1",
        "SELECT",
        "read",
        _t("nba.player_game_summary", "raw.odds_api_player_props"),
    ),
    (
        "SELECT 1",
        "SELECT",
        "read",
        frozenset(),
    ),
    (
        "SELECT CURRENT_DATE() AS today;",
        "SELECT",
        "read",
        frozenset(),
    ),
    (
        "(SELECT player_lookup FROM nba.players WHERE active) EXCEPT DISTINCT "
        "(SELECT player_lookup FROM nba.player_game_summary WHERE game_date = @d)",
        "SELECT",
        "read",
        _t("nba.players", "nba.player_game_summary"),
    ),
    (
        "SELECT * FROM ML.PREDICT(MODEL `sportsdata.models.points_xgb`, "
        "(SELECT * FROM predictions.features WHERE game_date = @d))",
        "SELECT",
        "read",
        _t("predictions.features"),
    ),
    (
        "ASSERT (SELECT COUNT(*) FROM nba.player_game_summary WHERE game_date = @d) > 0 "
        "AS 'no box scores loaded'",
        "ASSERT",
        "read",
        _t("nba.player_game_summary"),
    ),
    # --- DML --------------------------------------------------------------------------
    (
        "INSERT INTO predictions.player_prop_predictions (player_lookup, game_date, market, "
        "predicted_value, model_version) VALUES (@p, @d, 'points', 24.5, 'v7')",
        "INSERT",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "insert into `sportsdata.raw.bettingpros_props` select * from "
        "`sportsdata.staging.bettingpros_props_load` where scraped_at >= @start",
        "INSERT",
        "write",
        _t("raw.bettingpros_props", "staging.bettingpros_props_load"),
    ),
    (
        "INSERT nba.player_game_summary (player_lookup, game_date, points) "
        "SELECT player_lookup, game_date, pts FROM staging.box_scores WHERE game_date = @d",
        "INSERT",
        "write",
        _t("nba.player_game_summary", "staging.box_scores"),
    ),
    (
        "UPDATE predictions.player_prop_predictions SET is_active = FALSE "
        "WHERE game_date = @d AND model_version != @current",
        "UPDATE",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "UPDATE nba.player_game_summary t SET minutes = s.minutes FROM staging.minutes_fix s "
        "WHERE t.player_lookup = s.player_lookup AND t.game_date = s.game_date "
        "AND t.game_date = '2025-01-10'",
        "UPDATE",
        "write",
        _t("nba.player_game_summary", "staging.minutes_fix"),
    ),
    (
        "DELETE FROM raw.odds_api_game_lines WHERE snapshot_date < DATE_SUB(CURRENT_DATE(), "
        "INTERVAL 400 DAY)",
        "DELETE",
        "write",
        _t("raw.odds_api_game_lines"),
    ),
    (
        "delete predictions.player_prop_predictions where game_date = @d and market = 'pra'",
        "DELETE",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "TRUNCATE TABLE staging.bettingpros_props_load",
        "TRUNCATE_TABLE",
        "write",
        _t("staging.bettingpros_props_load"),
    ),
    (
        "MERGE nba.player_game_summary T USING staging.box_scores S "
        "ON T.player_lookup = S.player_lookup AND T.game_date = S.game_date "
        "AND T.game_date = @d "
        "WHEN MATCHED THEN UPDATE SET points = S.pts, rebounds = S.reb "
        "WHEN NOT MATCHED THEN INSERT (player_lookup, game_date, points, rebounds) "
        "VALUES (S.player_lookup, S.game_date, S.pts, S.reb)",
        "MERGE",
        "merge",
        _t("nba.player_game_summary", "staging.box_scores"),
    ),
    (
        """MERGE INTO `sportsdata.predictions.player_prop_predictions` AS target
        USING (
          SELECT * FROM `sportsdata.staging.prediction_batch`
          WHERE batch_id = @batch
        ) AS source
        ON target.prediction_id = source.prediction_id
        WHEN MATCHED AND target.game_date >= @d THEN
          UPDATE SET predicted_value = source.predicted_value
        WHEN NOT MATCHED BY TARGET THEN INSERT ROW;""",
        "MERGE",
        "merge",
        _t("predictions.player_prop_predictions", "staging.prediction_batch"),
    ),
    (
        "merge raw.odds_api_game_lines t using staging.odds_lines s on false "
        "when not matched by source and t.snapshot_date = @d then delete "
        "when not matched then insert row",
        "MERGE",
        "merge",
        _t("raw.odds_api_game_lines", "staging.odds_lines"),
    ),
    # --- DDL --------------------------------------------------------------------------
    (
        "CREATE TABLE IF NOT EXISTS nba.player_game_summary (player_lookup STRING NOT NULL, "
        "game_date DATE NOT NULL, points INT64, rebounds INT64, assists INT64) "
        "PARTITION BY game_date CLUSTER BY player_lookup "
        "OPTIONS (require_partition_filter = TRUE, description = 'box scores')",
        "CREATE_TABLE",
        "write",
        _t("nba.player_game_summary"),
    ),
    (
        "CREATE OR REPLACE TABLE analytics.player_rolling_form PARTITION BY game_date AS "
        "SELECT player_lookup, game_date, AVG(points) OVER w AS pts_l10 "
        "FROM nba.player_game_summary WHERE game_date >= '2023-10-01' "
        "WINDOW w AS (PARTITION BY player_lookup ORDER BY game_date ROWS 9 PRECEDING)",
        "CREATE_TABLE_AS_SELECT",
        "write",
        _t("analytics.player_rolling_form", "nba.player_game_summary"),
    ),
    (
        "create table backfill.props_2024 as (select * from raw.odds_api_player_props "
        "where _PARTITIONTIME between timestamp('2024-01-01') and timestamp('2024-12-31'))",
        "CREATE_TABLE_AS_SELECT",
        "write",
        _t("backfill.props_2024", "raw.odds_api_player_props"),
    ),
    (
        "CREATE TEMP TABLE todays_props AS SELECT * FROM raw.bettingpros_props "
        "WHERE DATE(scraped_at) = CURRENT_DATE()",
        "CREATE_TABLE_AS_SELECT",
        "write",
        _t("raw.bettingpros_props"),
    ),
    (
        "CREATE TABLE staging.box_scores LIKE nba.player_game_summary",
        "CREATE_TABLE",
        "write",
        _t("staging.box_scores", "nba.player_game_summary"),
    ),
    (
        "CREATE OR REPLACE VIEW analytics.v_today_props AS SELECT * FROM raw.bettingpros_props "
        "WHERE DATE(scraped_at) = CURRENT_DATE()",
        "CREATE_VIEW",
        "write",
        _t("analytics.v_today_props", "raw.bettingpros_props"),
    ),
    (
        "CREATE MATERIALIZED VIEW analytics.mv_daily_props_count "
        "OPTIONS (enable_refresh = TRUE, refresh_interval_minutes = 60) AS "
        "SELECT DATE(scraped_at) AS d, bookmaker, COUNT(*) AS n "
        "FROM raw.bettingpros_props GROUP BY 1, 2",
        "CREATE_MATERIALIZED_VIEW",
        "write",
        _t("analytics.mv_daily_props_count", "raw.bettingpros_props"),
    ),
    (
        "ALTER TABLE nba.player_game_summary SET OPTIONS (require_partition_filter = TRUE)",
        "ALTER_TABLE",
        "write",
        _t("nba.player_game_summary"),
    ),
    (
        "alter table `sportsdata.raw.odds_api_player_props` set options "
        "(partition_expiration_days = 730)",
        "ALTER_TABLE",
        "write",
        _t("raw.odds_api_player_props"),
    ),
    (
        "ALTER TABLE predictions.player_prop_predictions ADD COLUMN IF NOT EXISTS "
        "confidence FLOAT64",
        "ALTER_TABLE",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "ALTER VIEW analytics.v_today_props SET OPTIONS (description = 'props scraped today')",
        "ALTER_VIEW",
        "write",
        _t("analytics.v_today_props"),
    ),
    (
        "ALTER MATERIALIZED VIEW analytics.mv_daily_props_count SET OPTIONS "
        "(refresh_interval_minutes = 30)",
        "ALTER_MATERIALIZED_VIEW",
        "write",
        _t("analytics.mv_daily_props_count"),
    ),
    (
        "DROP TABLE IF EXISTS staging.box_scores",
        "DROP_TABLE",
        "write",
        _t("staging.box_scores"),
    ),
    ("DROP VIEW analytics.v_today_props", "DROP_VIEW", "write", _t("analytics.v_today_props")),
    (
        "DROP MATERIALIZED VIEW IF EXISTS analytics.mv_daily_props_count",
        "DROP_MATERIALIZED_VIEW",
        "write",
        _t("analytics.mv_daily_props_count"),
    ),
    ("CREATE SCHEMA IF NOT EXISTS backfill", "CREATE_SCHEMA", "write", frozenset()),
    (
        "CREATE SCHEMA sandbox OPTIONS (default_table_expiration_days = 7, location = 'US')",
        "CREATE_SCHEMA",
        "write",
        frozenset(),
    ),
    ("DROP SCHEMA IF EXISTS sandbox CASCADE", "DROP_SCHEMA", "write", frozenset()),
    (
        "CREATE OR REPLACE FUNCTION nba.implied_probability(american_odds INT64) RETURNS FLOAT64 "
        "AS (IF(american_odds > 0, 100 / (american_odds + 100), "
        "-american_odds / (-american_odds + 100)))",
        "CREATE_FUNCTION",
        "write",
        frozenset(),
    ),
    (
        "CREATE TEMP FUNCTION norm_name(s STRING) AS (LOWER(REGEXP_REPLACE(s, r'[^a-z]', '')))",
        "CREATE_FUNCTION",
        "write",
        frozenset(),
    ),
    (
        "CREATE OR REPLACE TABLE FUNCTION analytics.props_on(d DATE) AS "
        "SELECT * FROM raw.bettingpros_props WHERE DATE(scraped_at) = d",
        "CREATE_TABLE_FUNCTION",
        "write",
        _t("raw.bettingpros_props"),
    ),
    (
        """CREATE OR REPLACE PROCEDURE nba.refresh_player_game_summary(d DATE)
        BEGIN
          DELETE FROM nba.player_game_summary WHERE game_date = d;
          INSERT INTO nba.player_game_summary SELECT * FROM staging.box_scores WHERE game_date = d;
          IF (SELECT COUNT(*) FROM nba.player_game_summary WHERE game_date = d) = 0 THEN
            RAISE USING MESSAGE = 'empty';
          END IF;
        END""",
        "CREATE_PROCEDURE",
        "write",
        frozenset(),
    ),
    ("DROP FUNCTION IF EXISTS nba.implied_probability", "DROP_FUNCTION", "write", frozenset()),
    ("DROP PROCEDURE nba.refresh_player_game_summary", "DROP_PROCEDURE", "write", frozenset()),
    (
        "CREATE SNAPSHOT TABLE backfill.pgs_snapshot_20250101 CLONE nba.player_game_summary "
        "FOR SYSTEM_TIME AS OF TIMESTAMP '2025-01-01 00:00:00+00' "
        "OPTIONS (expiration_timestamp = TIMESTAMP '2025-03-01 00:00:00+00')",
        "CREATE_SNAPSHOT_TABLE",
        "write",
        _t("backfill.pgs_snapshot_20250101", "nba.player_game_summary"),
    ),
    (
        "CREATE EXTERNAL TABLE raw.ext_nbac_schedule OPTIONS (format = 'JSON', "
        "uris = ['gs://sportsdata-raw/nbac/schedule/*.json'])",
        "CREATE_EXTERNAL_TABLE",
        "write",
        _t("raw.ext_nbac_schedule"),
    ),
    (
        "CREATE OR REPLACE MODEL models.points_xgb OPTIONS (model_type = 'BOOSTED_TREE_REGRESSOR', "
        "input_label_cols = ['points']) AS SELECT * FROM predictions.features "
        "WHERE game_date < '2025-01-01'",
        "CREATE_MODEL",
        "write",
        _t("predictions.features"),
    ),
    (
        "CREATE ROW ACCESS POLICY partner_filter ON predictions.player_prop_predictions "
        "GRANT TO ('group:partners@example.com') FILTER USING (is_public)",
        "CREATE_ROW_ACCESS_POLICY",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "CREATE SEARCH INDEX props_idx ON raw.bettingpros_props (player_name)",
        "CREATE_SEARCH_INDEX",
        "write",
        _t("raw.bettingpros_props"),
    ),
    # --- export / load / call ---------------------------------------------------------
    (
        "EXPORT DATA OPTIONS (uri = 'gs://sportsdata-exports/predictions/*.parquet', "
        "format = 'PARQUET', overwrite = true) AS SELECT * FROM "
        "predictions.player_prop_predictions WHERE game_date = @d",
        "EXPORT_DATA",
        "write",
        _t("predictions.player_prop_predictions"),
    ),
    (
        "export data options(uri='gs://sportsdata-exports/props/*.csv', format='CSV', "
        "header=true) as select * from raw.bettingpros_props "
        "where date(scraped_at) = current_date()",
        "EXPORT_DATA",
        "write",
        _t("raw.bettingpros_props"),
    ),
    (
        "LOAD DATA INTO staging.box_scores FROM FILES (format = 'NEWLINE_DELIMITED_JSON', "
        "uris = ['gs://sportsdata-raw/bdl/box_scores/2025-01-15/*.json'])",
        "LOAD_DATA",
        "write",
        _t("staging.box_scores"),
    ),
    ("CALL nba.refresh_player_game_summary(@d)", "CALL", "analytics", frozenset()),
    (
        "call `sportsdata.nba.refresh_player_game_summary`(CURRENT_DATE());",
        "CALL",
        "analytics",
        frozenset(),
    ),
    # --- scripts ----------------------------------------------------------------------
    (
        "DECLARE d DATE DEFAULT CURRENT_DATE('America/New_York');\n"
        "SELECT * FROM nba.player_game_summary WHERE game_date = d;",
        "SCRIPT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        """DECLARE target_date DATE DEFAULT @d;
        DECLARE n INT64;
        SET n = (SELECT COUNT(*) FROM staging.box_scores WHERE game_date = target_date);
        IF n > 0 THEN
          MERGE nba.player_game_summary T USING staging.box_scores S
          ON T.player_lookup = S.player_lookup AND T.game_date = target_date
          WHEN MATCHED THEN UPDATE SET points = S.pts
          WHEN NOT MATCHED THEN INSERT ROW;
        ELSE
          SELECT 'nothing to merge' AS status;
        END IF;""",
        "SCRIPT",
        "merge",
        _t("staging.box_scores", "nba.player_game_summary"),
    ),
    (
        """BEGIN
          CREATE TEMP TABLE batch AS
            SELECT * FROM staging.prediction_batch WHERE batch_id = @batch;
          DELETE FROM predictions.player_prop_predictions
            WHERE game_date = @d AND prediction_id IN (SELECT prediction_id FROM batch);
          INSERT INTO predictions.player_prop_predictions SELECT * FROM batch;
        END;""",
        "SCRIPT",
        "write",
        _t("staging.prediction_batch", "predictions.player_prop_predictions"),
    ),
    (
        """BEGIN TRANSACTION;
        DELETE FROM nba.player_game_summary WHERE game_date = @d;
        INSERT INTO nba.player_game_summary SELECT * FROM staging.box_scores WHERE game_date = @d;
        COMMIT TRANSACTION;""",
        "SCRIPT",
        "write",
        _t("nba.player_game_summary", "staging.box_scores"),
    ),
    (
        """DECLARE d DATE DEFAULT '2024-10-22';
        WHILE d <= '2025-04-13' DO
          INSERT INTO analytics.team_offense_game_summary
          SELECT team_abbr, game_date, SUM(points) FROM nba.player_game_summary
          WHERE game_date = d GROUP BY 1, 2;
          SET d = DATE_ADD(d, INTERVAL 1 DAY);
        END WHILE;""",
        "SCRIPT",
        "write",
        _t("analytics.team_offense_game_summary", "nba.player_game_summary"),
    ),
    (
        """FOR rec IN (SELECT DISTINCT game_date FROM staging.box_scores)
        DO
          CALL nba.refresh_player_game_summary(rec.game_date);
        END FOR;""",
        "SCRIPT",
        "analytics",
        _t("staging.box_scores"),
    ),
    (
        """DECLARE i INT64 DEFAULT 0;
        LOOP
          SET i = i + 1;
          IF i > 3 THEN LEAVE; END IF;
          SELECT i;
        END LOOP;""",
        "SCRIPT",
        "read",
        frozenset(),
    ),
    (
        """BEGIN
          SELECT 1/0;
        EXCEPTION WHEN ERROR THEN
          INSERT INTO ops.script_errors (message, at) VALUES (@@error.message, CURRENT_TIMESTAMP());
        END;""",
        "SCRIPT",
        "write",
        _t("ops.script_errors"),
    ),
    (
        "EXECUTE IMMEDIATE 'SELECT COUNT(*) FROM nba.' || @table_name",
        "SCRIPT",
        "analytics",
        frozenset(),
    ),
    (
        "SET @@dataset_id = 'nba';\nSELECT COUNT(*) FROM player_game_summary WHERE game_date = @d;",
        "SCRIPT",
        "read",
        _t("nba.player_game_summary"),
    ),
    (
        "SELECT 1; SELECT 2;",
        "SCRIPT",
        "read",
        frozenset(),
    ),
    (
        "DECLARE x INT64;",
        "SCRIPT",
        "read",
        frozenset(),
    ),
    (
        """DECLARE dates ARRAY<DATE>;
        SET dates = (SELECT ARRAY_AGG(DISTINCT game_date) FROM staging.box_scores);
        DELETE FROM nba.player_game_summary WHERE game_date IN UNNEST(dates);
        CALL nba.log_refresh('player_game_summary');""",
        "SCRIPT",
        "analytics",
        _t("staging.box_scores", "nba.player_game_summary"),
    ),
    (
        """REPEAT
          DELETE FROM staging.bettingpros_props_load WHERE scraped_at < TIMESTAMP(@cutoff)
            AND RAND() < 0.5;
          UNTIL (SELECT COUNT(*) FROM staging.bettingpros_props_load) = 0
        END REPEAT;""",
        "SCRIPT",
        "write",
        _t("staging.bettingpros_props_load"),
    ),
    (
        """refresh: BEGIN
          MERGE nba.player_game_summary T USING staging.box_scores S
          ON T.player_lookup = S.player_lookup AND T.game_date = @d
          WHEN MATCHED THEN UPDATE SET points = S.pts;
          IF @@row_count = 0 THEN LEAVE refresh; END IF;
          EXPORT DATA OPTIONS (uri = 'gs://sportsdata-exports/pgs/*.csv', format = 'CSV')
            AS SELECT * FROM nba.player_game_summary WHERE game_date = @d;
        END refresh;""",
        "SCRIPT",
        "merge",
        _t("nba.player_game_summary", "staging.box_scores"),
    ),
    (
        """CASE @market
          WHEN 'points' THEN
            SELECT * FROM predictions.player_prop_predictions
            WHERE game_date = @d AND market = 'points';
          WHEN 'rebounds' THEN
            INSERT INTO ops.requests (market) VALUES ('rebounds');
          ELSE
            SELECT 'unsupported market';
        END CASE;""",
        "SCRIPT",
        "write",
        _t("predictions.player_prop_predictions", "ops.requests"),
    ),
    (
        """IF @rebuild THEN
          CREATE OR REPLACE TABLE analytics.player_rolling_form AS
            SELECT * FROM nba.player_game_summary WHERE game_date >= '2024-10-01';
        ELSEIF (SELECT COUNT(*) FROM analytics.player_rolling_form) = 0 THEN
          RAISE USING MESSAGE = 'rolling form empty';
        END IF;""",
        "SCRIPT",
        "write",
        _t("analytics.player_rolling_form", "nba.player_game_summary"),
    ),
    # --- unknown ----------------------------------------------------------------------
    ("SELEC player FROM nba.players", "UNKNOWN", "analytics", _t("nba.players")),
    ("UPDATE SET WHERE", "UNKNOWN", "analytics", frozenset()),
    ("this is not sql at all", "UNKNOWN", "analytics", frozenset()),
    ("-- only a comment", "UNKNOWN", "analytics", frozenset()),
    ("", "UNKNOWN", "analytics", frozenset()),
]
