"""Held-in corpus of repeated query shapes and the verdict each must get.

Tables: the worked example's (``bastion.localbq.seed_views``) plus
``nba_ref.teams``. ``{p}`` is the project, ``{day}`` a date five days ago and ``{since}`` twenty days ago
(the seeded data runs up to today). An eligible entry names the base table the
view reads (and the view is validated: DDL accepted by the local server, same rows);
an ineligible one names a fragment of the reason.
"""

# ruff: noqa: E501  (one query per line reads better than wrapped SQL)
from __future__ import annotations

ODDS = "`{p}.nba_raw.odds_api_game_lines`"
PGS = "`{p}.nba_analytics.player_game_summary`"
DQ = "`{p}.nba_monitoring.data_quality_checks`"
TEAMS = "`{p}.nba_ref.teams`"

#: (query, "eligible:<base table>" | "ineligible:<reason fragment>")
CORPUS: list[tuple[str, str]] = [
    # --- eligible: aggregates with literal, list, range, parameter-free filters -------
    (
        f"SELECT bookmaker, COUNT(*) AS n FROM {ODDS} GROUP BY bookmaker",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT bookmaker, COUNT(*) AS n FROM {ODDS} WHERE game_date = '{{day}}' GROUP BY bookmaker",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT market, AVG(point) AS p FROM {ODDS} WHERE bookmaker IN ('draftkings', 'fanduel') GROUP BY market",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT game_id, MAX(snapshot_timestamp) AS latest FROM {ODDS} WHERE game_date BETWEEN '{{since}}' AND '{{day}}' GROUP BY game_id",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT game_date, MIN(point) AS lo, MAX(point) AS hi FROM {ODDS} WHERE market = 'totals' GROUP BY game_date",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT COUNT(*) AS n FROM {ODDS} WHERE game_date >= '{{since}}'",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT SUM(price) AS s FROM {ODDS} WHERE bookmaker = 'betmgm' AND market = 'spreads'",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT bookmaker, market, ROUND(AVG(point), 1) AS p, COUNT(*) AS n FROM {ODDS} WHERE game_date > '{{since}}' GROUP BY bookmaker, market ORDER BY p DESC",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT game_id, COUNT(*) AS n FROM {ODDS} WHERE game_date = '{{day}}' GROUP BY game_id ORDER BY n DESC, game_id LIMIT 2",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT DISTINCT bookmaker FROM {ODDS} WHERE game_date >= '{{since}}'",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT bookmaker, COUNT(*) AS n FROM {ODDS} WHERE game_date >= '{{since}}' GROUP BY bookmaker HAVING COUNT(*) > 10",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT DATE_TRUNC(game_date, MONTH) AS month, COUNT(*) AS n FROM {ODDS} GROUP BY DATE_TRUNC(game_date, MONTH)",
        "eligible:odds_api_game_lines",
    ),
    (
        f"SELECT player_lookup, SUM(points) AS pts FROM {PGS} WHERE game_date >= '{{since}}' GROUP BY player_lookup",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT team_abbr, AVG(points) AS ppg, AVG(minutes_played) AS mpg FROM {PGS} WHERE season_year = 2025 GROUP BY team_abbr",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT player_lookup, MAX(points) AS best FROM {PGS} WHERE team_abbr = 'LAL' GROUP BY player_lookup",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT player_lookup, COUNT(*) AS games FROM {PGS} WHERE points >= 20 GROUP BY player_lookup",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT team_abbr, COUNTIF(points > 30) AS big_games FROM {PGS} GROUP BY team_abbr",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT player_lookup, team_abbr, AVG(points) AS avg_points FROM {PGS} WHERE game_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 14 DAY) GROUP BY player_lookup, team_abbr",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT season_year, MIN(game_date) AS first_game, MAX(game_date) AS last_game FROM {PGS} GROUP BY season_year",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT g.team_abbr, SUM(g.points) AS pts FROM {PGS} AS g JOIN {TEAMS} AS t ON g.team_abbr = t.team_abbr WHERE t.conference = 'West' GROUP BY g.team_abbr",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT t.conference, AVG(g.points) AS ppg FROM {PGS} AS g INNER JOIN {TEAMS} AS t ON g.team_abbr = t.team_abbr WHERE g.game_date >= '{{since}}' GROUP BY t.conference",
        "eligible:player_game_summary",
    ),
    (
        f"SELECT processor, status, COUNT(*) AS checks FROM {DQ} WHERE check_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY) GROUP BY processor, status",
        "eligible:data_quality_checks",
    ),
    (
        f"SELECT processor, SUM(issues) AS issues FROM {DQ} WHERE status = 'fail' GROUP BY processor",
        "eligible:data_quality_checks",
    ),
    (
        f"SELECT table_name, SUM(rows_checked) AS rows_checked, SUM(issues) AS issues FROM {DQ} WHERE check_date = CURRENT_DATE() GROUP BY table_name",
        "eligible:data_quality_checks",
    ),
    (
        f"SELECT check_date, LOGICAL_AND(issues = 0) AS clean FROM {DQ} GROUP BY check_date",
        "eligible:data_quality_checks",
    ),
    (
        f"SELECT processor, MAX(issues) AS worst FROM {DQ} WHERE processor IN ('raw', 'analytics') AND check_date > '{{since}}' GROUP BY processor",
        "eligible:data_quality_checks",
    ),
    (
        f"SELECT b, COUNT(*) AS n FROM {ODDS}, UNNEST(['x', 'y']) AS b GROUP BY b",
        "ineligible:UNNEST in FROM",
    ),
    # --- ineligible, with the reason -------------------------------------------------------
    (f"SELECT * FROM {ODDS} WHERE game_date = '{{day}}'", "ineligible:no aggregation"),
    (
        f"SELECT game_id, point FROM {ODDS} WHERE bookmaker = 'draftkings'",
        "ineligible:no aggregation",
    ),
    (f"SELECT COUNT(DISTINCT game_id) AS games FROM {ODDS}", "ineligible:COUNT(DISTINCT)"),
    (
        f"SELECT bookmaker, STRING_AGG(game_id) AS ids FROM {ODDS} GROUP BY bookmaker",
        "ineligible:aggregate not supported",
    ),
    (
        f"SELECT bookmaker, APPROX_QUANTILES(point, 4) AS q FROM {ODDS} GROUP BY bookmaker",
        "ineligible:aggregate not supported",
    ),
    (
        f"SELECT player_lookup, points, RANK() OVER (ORDER BY points DESC) AS r FROM {PGS} WHERE game_date = '{{day}}'",
        "ineligible:window function",
    ),
    (
        f"SELECT player_lookup, points FROM {PGS} WHERE game_date = '{{day}}' QUALIFY ROW_NUMBER() OVER (PARTITION BY team_abbr ORDER BY points DESC) = 1",
        "ineligible:window function",
    ),
    (
        f"SELECT g.team_abbr, COUNT(*) AS n FROM {PGS} AS g LEFT JOIN {TEAMS} AS t ON g.team_abbr = t.team_abbr GROUP BY g.team_abbr",
        "ineligible:INNER JOIN only",
    ),
    (
        f"WITH recent AS (SELECT * FROM {PGS} WHERE game_date >= '{{since}}') SELECT player_lookup, SUM(points) AS pts FROM recent GROUP BY player_lookup",
        "ineligible:WITH clause",
    ),
    (
        f"SELECT player_lookup, SUM(points) AS pts FROM (SELECT * FROM {PGS} WHERE points > 10) GROUP BY player_lookup",
        "ineligible:subquery",
    ),
    (
        f"SELECT player_lookup, COUNT(*) AS n FROM {PGS} WHERE team_abbr IN (SELECT team_abbr FROM {TEAMS} WHERE conference = 'East') GROUP BY player_lookup",
        "ineligible:subquery",
    ),
    (
        f"SELECT bookmaker, COUNT(*) AS n FROM {ODDS} GROUP BY bookmaker UNION ALL SELECT 'all', COUNT(*) FROM {ODDS}",
        "ineligible:set operations",
    ),
    (
        f"SELECT player_lookup, points FROM {PGS} WHERE team_abbr = 'LAL' GROUP BY player_lookup",
        "ineligible:read outside the GROUP BY keys",
    ),
    ("CALL `{p}.nba_ops.refresh_odds`('2026-01-05')", "ineligible:CALL"),
    (
        f"MERGE {PGS} T USING `{{p}}.nba_analytics.staging_3f9a2c1e` S ON T.player_lookup = S.player_lookup WHEN MATCHED THEN UPDATE SET points = S.points",
        "ineligible:a write",
    ),
    (
        f"INSERT INTO {DQ} (check_date, processor, status) VALUES ('2026-01-05', 'raw', 'pass')",
        "ineligible:a write",
    ),
    (f"UPDATE {DQ} SET status = 'pass' WHERE check_date = '{{day}}'", "ineligible:a write"),
    (
        f"SELECT processor, COUNT(*) AS n FROM {DQ} GROUP BY processor; SELECT 1",
        "ineligible:several statements",
    ),
    (
        f"SELECT processor, SUM(issues * RAND()) AS x FROM {DQ} GROUP BY processor",
        "ineligible:non-deterministic",
    ),
    ("SELECT 1 AS one", "ineligible:no base table"),
]
