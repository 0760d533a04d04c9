"""Dollars from bytes billed (on-demand) or slot time (capacity / editions).

The default on-demand price is BigQuery's list price in the US multi-region, 6.25 USD
per TiB billed, in force since 2023-07-05 (https://cloud.google.com/bigquery/pricing,
"On-demand compute pricing"; checked 2026-12). Other regions differ: give
``--usd-per-tib``. Reservation / editions users pay slot-hours instead: give
``--usd-per-slot-hour`` (e.g. Enterprise pay-as-you-go) and the cost is computed from
``total_slot_ms``. The first free TiB per month of a billing account is not subtracted:
it is shared by every project of the account.
"""

from __future__ import annotations

from dataclasses import dataclass

TIB = 1024**4
DEFAULT_USD_PER_TIB = 6.25
DEFAULT_SOURCE = (
    "BigQuery on-demand list price, US multi-region, since 2023-07-05 "
    "(cloud.google.com/bigquery/pricing, checked 2026-12)"
)
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Price:
    """How observed work turns into dollars."""

    usd_per_tib: float = DEFAULT_USD_PER_TIB
    usd_per_slot_hour: float | None = None
    source: str = DEFAULT_SOURCE

    @classmethod
    def of(cls, usd_per_tib: float | None, usd_per_slot_hour: float | None) -> Price:
        if usd_per_slot_hour is not None:
            return cls(
                usd_per_tib=0.0,
                usd_per_slot_hour=usd_per_slot_hour,
                source=f"{usd_per_slot_hour:g} USD per slot-hour (given)",
            )
        if usd_per_tib is not None:
            return cls(usd_per_tib=usd_per_tib, source=f"{usd_per_tib:g} USD per TiB (given)")
        return cls()

    @property
    def model(self) -> str:
        return "slot-hours" if self.usd_per_slot_hour is not None else "on-demand"

    def usd(self, bytes_billed: int, slot_ms: int) -> float:
        if self.usd_per_slot_hour is not None:
            return slot_ms / 3_600_000 * self.usd_per_slot_hour
        return bytes_billed / TIB * self.usd_per_tib

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "usd_per_tib": self.usd_per_tib if self.usd_per_slot_hour is None else None,
            "usd_per_slot_hour": self.usd_per_slot_hour,
            "source": self.source,
        }


def per_month(amount: float, window_seconds: float) -> float:
    """``amount`` observed over ``window_seconds``, extrapolated to an average month."""
    if window_seconds <= 0:
        return 0.0
    return amount * DAYS_PER_MONTH * 86_400 / window_seconds
