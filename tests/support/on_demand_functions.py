"""Functions of on-demand features used by the tests (importable by a `provender serve` process too)."""

from __future__ import annotations

import pandas as pd


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas mode: the request's amount per trip, whether it is big, and the conversion rate scaled."""
    return pd.DataFrame(
        {
            "per_trip": frame["amount"] / frame["stats__trips"],
            "big": frame["amount"] > 10.0,
            "scaled": frame["stats__conv_rate"] * 2,
        }
    )


def ratios_python(columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Python mode: the same as :func:`ratios` over plain lists (None where an input is missing)."""
    amounts, trips, rates = columns["amount"], columns["stats__trips"], columns["stats__conv_rate"]
    per_trip: list[object] = []
    for amount, count in zip(amounts, trips, strict=True):
        if amount is None or count is None:
            per_trip.append(None)
        else:
            per_trip.append(amount / count if count else None)  # type: ignore[operator]
    return {
        "per_trip": per_trip,
        "big": [None if a is None else a > 10.0 for a in amounts],  # type: ignore[operator]
        "scaled": [None if r is None else r * 2 for r in rates],  # type: ignore[operator]
    }


def failing(frame: pd.DataFrame) -> pd.DataFrame:
    """Always fails."""
    raise ValueError(f"no way ({len(frame)} rows)")


def wrong_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns a column that is not declared."""
    return pd.DataFrame({"surprise": frame["amount"]})


def wrong_type(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns text for a DOUBLE feature."""
    return pd.DataFrame({"per_trip": ["a lot"] * len(frame)})


def wrong_length(columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Returns one value too many."""
    return {"per_trip": [*columns["amount"], 1.0]}


def doubled(columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Python mode: a SQL source's windowed sum doubled, plus the request's tip."""
    return {
        "doubled_plus_tip": [
            None if total is None else total * 2 + tip  # type: ignore[operator]
            for total, tip in zip(columns["rides__fare2_sum_1d"], columns["tip"], strict=True)
        ]
    }


def typed_copies(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas mode: each input typed column back, arithmetic on two, and the input dtypes as text."""
    dtypes = ",".join(f"{name}:{frame[name].dtype}" for name in frame.columns)
    return pd.DataFrame(
        {
            "a": frame["t__a"],
            "b": frame["t__b"] * 2,
            "c": frame["t__c"] + frame["r"],
            "d": frame["t__d"],
            "e": frame["t__e"],
            "dtypes": [dtypes] * len(frame),
        }
    )


def duplicated_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas mode: the declared column twice."""
    return pd.concat([frame[["r"]], frame[["r"]]], axis=1).set_axis(["c", "c"], axis=1)


def added_to_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Pandas mode: the input frame itself, with the declared column added (its inputs stay in it)."""
    frame["c"] = frame["t__c"] + frame["r"]
    return frame


def added_to_input_python(columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Python mode: the input columns, with the declared column added."""
    pairs = zip(columns["t__c"], columns["r"], strict=True)
    columns["c"] = [None if c is None or r is None else c + r for c, r in pairs]  # type: ignore[operator]
    return columns
