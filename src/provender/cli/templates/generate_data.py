"""Write a week of hourly sample driver statistics as date-partitioned Parquet.

Usage: python generate_data.py [--drivers 10] [--days 7] [--out data/driver_statistics]
The week ends at the current hour (UTC), so the latest values are fresh for online lookups.
"""

import argparse
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drivers", type=int, default=10, help="number of drivers, ids from 1001")
    parser.add_argument("--days", type=int, default=7, help="days of hourly rows, ending now")
    parser.add_argument("--out", default="data/driver_statistics", help="output directory")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(args.days * 24)][::-1]
    naive_hours = [h.replace(tzinfo=None) for h in hours]  # numpy datetimes carry no zone: UTC
    driver_ids = np.arange(1001, 1001 + args.drivers, dtype=np.int64)
    times = np.repeat(np.array(naive_hours, dtype="datetime64[us]"), len(driver_ids))
    n = len(times)
    table = pa.table(
        {
            "driver_id": pa.array(np.tile(driver_ids, len(hours))),
            "avg_daily_trips": pa.array(rng.integers(0, 1000, n).astype(np.int32)),
            "conv_rate": pa.array(rng.random(n).astype(np.float32)),
            "acc_rate": pa.array(rng.random(n).astype(np.float32)),
            "datetime": pa.array(times, pa.timestamp("us", tz="UTC")),
            "created": pa.array(times + np.timedelta64(5, "m"), pa.timestamp("us", tz="UTC")),
            "date": pa.array(times.astype("datetime64[D]").astype(str)),
        }
    )
    out = Path(args.out)
    # One file per day, written synchronously: pyarrow's dataset writer can leave a thread running
    # into interpreter exit and abort the process (apache/arrow#36980).
    dates = table.column("date").to_numpy(zero_copy_only=False)
    for day in sorted(set(dates)):
        folder = out / f"date={day}"
        shutil.rmtree(folder, ignore_errors=True)  # a day written again replaces the old one
        folder.mkdir(parents=True)
        pq.write_table(table.filter(pa.array(dates == day)).drop_columns(["date"]), folder / "part-0.parquet")
    print(
        f"wrote {n} rows for {len(driver_ids)} drivers, {hours[0]:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC, to {out}/"
    )


if __name__ == "__main__":
    main()
