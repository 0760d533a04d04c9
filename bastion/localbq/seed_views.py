"""The tracker's three materialized views (item 1.3) as a worked example: their base
tables, seeded deterministically, and the repeated queries each view is meant to serve.

``bastion views`` finds these shapes in observed jobs, proposes one view per shape,
and ``--validate`` proves the rewritten queries return the same rows. Dates are relative
to ``today`` (default: the current UTC date) because the data-quality query reads the
last seven days with ``CURRENT_DATE()``.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import LocalBigQuery

#: view name → the repeated query it serves (``{project}`` to fill in).
TRACKER_QUERIES = {
    "odds_api_game_lines_preferred_mv": (
        "SELECT game_date, game_id, bookmaker, market, MAX(snapshot_timestamp) AS latest_snapshot,"
        " AVG(point) AS point, COUNT(*) AS snapshots"
        " FROM `{project}.nba_raw.odds_api_game_lines`"
        " WHERE game_date = '{day}' AND bookmaker IN ('draftkings', 'fanduel')"
        " GROUP BY game_date, game_id, bookmaker, market"
    ),
    "current_season_players_mv": (
        "SELECT player_lookup, team_abbr, COUNT(*) AS games_played, AVG(points) AS avg_points,"
        " MAX(game_date) AS last_game"
        " FROM `{project}.nba_analytics.player_game_summary`"
        " WHERE season_year = 2025 AND game_date >= '{season_start}'"
        " GROUP BY player_lookup, team_abbr"
    ),
    "data_quality_summary_mv": (
        "SELECT processor, status, COUNT(*) AS checks, SUM(issues) AS issues,"
        " SUM(rows_checked) AS rows_checked"
        " FROM `{project}.nba_monitoring.data_quality_checks`"
        " WHERE check_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY)"
        " GROUP BY processor, status"
    ),
}
TEAMS = ("LAL", "GSW", "DEN", "BOS", "DAL", "MIL")
PLAYERS = [(f"player{i:02d}", TEAMS[i % len(TEAMS)]) for i in range(18)]
PROCESSORS = ("raw", "analytics", "precompute", "predictions")


def tracker_queries(project: str, today: dt.date | None = None) -> dict[str, str]:
    today = today or dt.datetime.now(dt.UTC).date()
    values = {
        "project": project,
        "day": (today - dt.timedelta(days=1)).isoformat(),
        "season_start": (today - dt.timedelta(days=20)).isoformat(),
    }
    return {name: sql.format(**values) for name, sql in TRACKER_QUERIES.items()}


def seed_tracker_views(bq: LocalBigQuery, *, days: int = 30, today: dt.date | None = None) -> None:
    rng = random.Random(11)
    today = today or dt.datetime.now(dt.UTC).date()
    dates = [today - dt.timedelta(days=offset) for offset in range(days, -1, -1)]
    bq.create_table(
        "nba_raw.odds_api_game_lines",
        [
            ("game_date", "DATE"),
            ("game_id", "STRING"),
            ("bookmaker", "STRING"),
            ("market", "STRING"),
            ("point", "FLOAT64"),
            ("price", "INT64"),
            ("snapshot_timestamp", "TIMESTAMP"),
        ],
        partition_field="game_date",
    )
    bq.create_table(
        "nba_analytics.player_game_summary",
        [
            ("game_date", "DATE"),
            ("season_year", "INT64"),
            ("player_lookup", "STRING"),
            ("team_abbr", "STRING"),
            ("points", "INT64"),
            ("minutes_played", "FLOAT64"),
        ],
        partition_field="game_date",
    )
    bq.create_table(
        "nba_monitoring.data_quality_checks",
        [
            ("check_date", "DATE"),
            ("processor", "STRING"),
            ("table_name", "STRING"),
            ("status", "STRING"),
            ("rows_checked", "INT64"),
            ("issues", "INT64"),
        ],
        partition_field="check_date",
    )
    lines, summaries, checks = [], [], []
    for day in dates:
        for home, away in zip(TEAMS[::2], TEAMS[1::2], strict=True):
            game_id = f"{day:%Y%m%d}_{away}_{home}"
            for bookmaker in ("draftkings", "fanduel", "betmgm"):
                for market in ("spreads", "totals"):
                    for hour in (12, 16):
                        lines.append(
                            {
                                "game_date": day.isoformat(),
                                "game_id": game_id,
                                "bookmaker": bookmaker,
                                "market": market,
                                "point": round(rng.uniform(-9, 9) * 2) / 2
                                if market == "spreads"
                                else round(rng.uniform(210, 240) * 2) / 2,
                                "price": rng.choice((-115, -110, -105)),
                                "snapshot_timestamp": f"{day.isoformat()}T{hour}:00:00Z",
                            }
                        )
        for player, team in PLAYERS:
            summaries.append(
                {
                    "game_date": day.isoformat(),
                    "season_year": 2025,
                    "player_lookup": player,
                    "team_abbr": team,
                    "points": max(0, int(rng.gauss(18, 7))),
                    "minutes_played": round(rng.uniform(12, 38), 1),
                }
            )
        for processor in PROCESSORS:
            for table in ("games", "players"):
                issues = max(0, int(rng.gauss(1, 2)))
                checks.append(
                    {
                        "check_date": day.isoformat(),
                        "processor": processor,
                        "table_name": table,
                        "status": "fail" if issues > 2 else "pass",
                        "rows_checked": rng.randint(100, 5000),
                        "issues": issues,
                    }
                )
    bq.insert_rows("nba_raw.odds_api_game_lines", lines)
    bq.insert_rows("nba_analytics.player_game_summary", summaries)
    bq.insert_rows("nba_monitoring.data_quality_checks", checks)
