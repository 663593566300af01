"""The functions of benchmarks/on_demand.py: the same three values in python and pandas mode."""

from __future__ import annotations

import pandas as pd


def python_mode(columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Amount per trip, whether the amount is big, the conversion rate doubled (plain lists)."""
    amounts, trips, rates = columns["amount"], columns["stats__trips"], columns["stats__conv_rate"]
    return {
        "per_trip": [None if a is None or not t else a / t for a, t in zip(amounts, trips, strict=True)],  # type: ignore[operator]
        "big": [None if a is None else a > 10.0 for a in amounts],  # type: ignore[operator]
        "scaled": [None if r is None else r * 2 for r in rates],  # type: ignore[operator]
    }


def pandas_mode(frame: pd.DataFrame) -> pd.DataFrame:
    """The same over a DataFrame."""
    return pd.DataFrame(
        {
            "per_trip": frame["amount"] / frame["stats__trips"],
            "big": frame["amount"] > 10.0,
            "scaled": frame["stats__conv_rate"] * 2,
        }
    )
