"""Every bench of issue #11 in one bounded run, one table: each of our figures
beside a baseline measured in the same process run, the ratio and its goal.

    bench/run                     # SQLite, and PostgreSQL when its server answers
    BENCH_DATABASE_URL=postgresql+asyncpg://USER@HOST:PORT/DB bench/run   # another server
    bench/run --quick             # smaller runs, for a first look
    bench/run --only browser      # the widget in headless Chromium, the loader's size, serve's memory

On PostgreSQL each bench creates a database of its own on the server
(postgresql+asyncpg://root@127.0.0.1:5432 unless BENCH_DATABASE_URL names another)
and drops it afterwards: no bench touches a database someone else uses.

Servers listen on 127.0.0.1 only; every load is bounded in requests or time.
Absolute figures depend on the machine and on whoever else uses it; the ratio
to the same-run baseline is the figure to compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial

import bench_eligibility
import bench_import
import bench_outbox
import bench_submissions
import bench_widget
from support import Row, have_postgresql, have_wrk, postgresql_server


def table(rows: list[Row]) -> str:
    header = f"| path | db | ours | baseline (same run) | ratio | goal | pass | note |\n|{'---|' * 8}"
    lines = [
        f"| {r.path} | {r.database} | {r.ours:,.1f} {r.unit} | {r.baseline:,.1f} {r.unit} | "
        f"{r.ratio:.2f} | ≥ {r.goal:.2f} | {'pass' if r.passed else 'FAIL'} | {r.note} |"
        for r in rows
    ]
    return "\n".join([header, *lines])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--only", choices=["eligibility", "submissions", "import", "outbox", "browser"])
    args = parser.parse_args()
    databases = ["sqlite"]
    if have_postgresql():
        databases.append("postgresql")
    else:
        print(f"PostgreSQL at {postgresql_server()} does not answer: its figures skipped", file=sys.stderr)
    quick = args.quick
    benches: list[tuple[str, str, Callable[[], list[Row]]]] = []
    for db in databases:
        if have_wrk():
            eligibility = partial(bench_eligibility.measure, db, offers=20_000, seconds=3 if quick else 5)
            benches.append(("eligibility", db, eligibility))
        else:
            print("wrk not found (apt-get install wrk): eligibility skipped", file=sys.stderr)
        benches.append(("submissions", db, partial(bench_submissions.measure, db, 24 if quick else 48)))
    for db in databases:
        benches.append(("import", db, partial(bench_import.measure, 20_000 if quick else 50_000, db)))
    for db in databases:
        outbox = partial(bench_outbox.measure, db, 150 if quick else 300, 1 if quick else 5)
        benches.append(("outbox", db, outbox))
    # Bounded by its own time limit: the browser is killed there, the rounds done are counted.
    browser = partial(bench_widget.measure, 6 if quick else 10, 45.0 if quick else 75.0)
    benches.append(("browser", "sqlite", browser))

    rows: list[Row] = []
    started = time.monotonic()
    print(f"load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    for name, db, run in benches:
        if args.only and name != args.only:
            continue
        began = time.monotonic()
        print(f"… {name} ({db})", file=sys.stderr, flush=True)
        try:
            rows.extend(run())
        except Exception:
            traceback.print_exc()
            print(f"{name} ({db}) failed", file=sys.stderr)
        print(f"  {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    load = os.getloadavg()[0]
    spent = time.monotonic() - started
    print(f"\n{spent:.0f} s in all; load average at the end {load:.1f} on {os.cpu_count()} cores")
    return 0 if rows and all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
