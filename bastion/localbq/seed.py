"""Demo data shaped like the sports-data platform's tables (deterministic).

* ``nba.player_game_summary``: partitioned on ``game_date``, ``require_partition_filter``;
* ``raw.props``: scraped prop lines, ingestion-time partitioned (``_PARTITIONTIME``),
  no filter required (the instrumentor's client-side check is what catches full scans);
* ``predictions.player_prop_predictions``: partitioned on ``game_date``;
* ``odds.game_lines``: partitioned on ``game_date``.

Dates run over the ``days`` days ending ``end`` (default 2026-01-20, the tracker's era).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import LocalBigQuery

PLAYERS = [
    ("lebronjames", "LAL"),
    ("anthonydavis", "LAL"),
    ("stephencurry", "GSW"),
    ("jimmybutler", "GSW"),
    ("nikolajokic", "DEN"),
    ("jamalmurray", "DEN"),
    ("jaysontatum", "BOS"),
    ("jaylenbrown", "BOS"),
    ("lukadoncic", "DAL"),
    ("kyrieirving", "DAL"),
    ("giannisantetokounmpo", "MIL"),
    ("damianlillard", "MIL"),
]
BOOKMAKERS = ("draftkings", "fanduel", "betmgm")


def seed_demo(bq: LocalBigQuery, *, days: int = 14, end: dt.date | None = None) -> None:
    rng = random.Random(7)
    end = end or dt.date(2026, 1, 20)
    dates = [end - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]

    bq.create_table(
        "nba.player_game_summary",
        [
            ("game_id", "STRING"),
            ("game_date", "DATE"),
            ("player_lookup", "STRING"),
            ("team_abbr", "STRING"),
            ("minutes_played", "FLOAT64"),
            ("points", "INT64"),
            ("rebounds", "INT64"),
            ("assists", "INT64"),
        ],
        partition_field="game_date",
        require_partition_filter=True,
    )
    bq.create_table(
        "raw.props",
        [
            ("player_lookup", "STRING"),
            ("bookmaker", "STRING"),
            ("market", "STRING"),
            ("line", "FLOAT64"),
            ("over_price", "INT64"),
            ("under_price", "INT64"),
            ("scraped_at", "TIMESTAMP"),
        ],
        ingestion_time=True,
    )
    bq.create_table(
        "predictions.player_prop_predictions",
        [
            ("game_date", "DATE"),
            ("player_lookup", "STRING"),
            ("predicted_points", "FLOAT64"),
            ("line", "FLOAT64"),
            ("recommendation", "STRING"),
            ("confidence", "FLOAT64"),
            ("created_at", "TIMESTAMP"),
        ],
        partition_field="game_date",
    )
    bq.create_table(
        "odds.game_lines",
        [
            ("game_date", "DATE"),
            ("game_id", "STRING"),
            ("bookmaker", "STRING"),
            ("home_team", "STRING"),
            ("away_team", "STRING"),
            ("spread", "FLOAT64"),
            ("total", "FLOAT64"),
            ("updated_at", "TIMESTAMP"),
        ],
        partition_field="game_date",
    )
    teams = sorted({team for _, team in PLAYERS})
    for day in dates:
        stamp = dt.datetime.combine(day, dt.time(17, 0), tzinfo=dt.UTC)
        games = [(teams[i], teams[i + 1]) for i in range(0, len(teams) - 1, 2)]
        summaries, props, predictions, lines = [], [], [], []
        game_of: dict[str, str] = {}
        for home, away in games:
            game_id = f"{day:%Y%m%d}_{away}_{home}"
            game_of[home] = game_of[away] = game_id
            for bookmaker in BOOKMAKERS:
                lines.append(
                    {
                        "game_date": day.isoformat(),
                        "game_id": game_id,
                        "bookmaker": bookmaker,
                        "home_team": home,
                        "away_team": away,
                        "spread": round(rng.uniform(-9, 9) * 2) / 2,
                        "total": round(rng.uniform(210, 240) * 2) / 2,
                        "updated_at": stamp.isoformat(),
                    }
                )
        for player, team in PLAYERS:
            game_id = game_of[team]
            points = max(0, int(rng.gauss(24, 7)))
            summaries.append(
                {
                    "game_id": game_id,
                    "game_date": day.isoformat(),
                    "player_lookup": player,
                    "team_abbr": team,
                    "minutes_played": round(rng.uniform(26, 38), 1),
                    "points": points,
                    "rebounds": max(0, int(rng.gauss(7, 3))),
                    "assists": max(0, int(rng.gauss(6, 3))),
                }
            )
            line = round(rng.uniform(18, 30) * 2) / 2 + 0.5
            for bookmaker in BOOKMAKERS:
                props.append(
                    {
                        "player_lookup": player,
                        "bookmaker": bookmaker,
                        "market": "player_points",
                        "line": line,
                        "over_price": rng.choice((-120, -115, -110, -105, 100)),
                        "under_price": rng.choice((-120, -115, -110, -105, 100)),
                        "scraped_at": (stamp - dt.timedelta(hours=3)).isoformat(),
                    }
                )
            predicted = round(points + rng.gauss(0, 4), 1)
            predictions.append(
                {
                    "game_date": day.isoformat(),
                    "player_lookup": player,
                    "predicted_points": predicted,
                    "line": line,
                    "recommendation": "OVER" if predicted > line else "UNDER",
                    "confidence": round(rng.uniform(0.5, 0.9), 2),
                    "created_at": (stamp - dt.timedelta(hours=1)).isoformat(),
                }
            )
        bq.insert_rows("nba.player_game_summary", summaries)
        bq.insert_rows(
            "raw.props", props, partition_time=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        )
        bq.insert_rows("predictions.player_prop_predictions", predictions)
        bq.insert_rows("odds.game_lines", lines)


def _tracker_views(bq: LocalBigQuery) -> None:
    from .seed_views import seed_tracker_views

    seed_tracker_views(bq)


SEEDS = {"demo": seed_demo, "tracker-views": _tracker_views}
