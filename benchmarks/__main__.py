"""Run the benchmark suite and write ``benchmarks/RESULTS.md``.

python -m benchmarks                          # Overture on SQLite and PostgreSQL
python -m benchmarks --quick --store sqlite   # smaller scenarios, under a minute
python -m benchmarks --store all --peers      # and Celery + Redis, Procrastinate + PostgreSQL
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import overture_scenarios, peers, report
from benchmarks.common import FULL, NAMES, POSTGRES, QUICK, REDIS, Measurement, log

DESCRIPTION = "Run the benchmark suite and write benchmarks/RESULTS.md."
STORES = {"sqlite": ["SQLite"], "postgres": ["PostgreSQL"], "all": ["SQLite", "PostgreSQL"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    parser.add_argument("--store", choices=STORES, default="all", help="Overture's store(s)")
    parser.add_argument("--peers", action="store_true", help="also Celery and Procrastinate")
    parser.add_argument("--quick", action="store_true", help="smaller scenarios")
    parser.add_argument("--repeat", type=int, default=3, help="samples per scenario (median)")
    parser.add_argument(
        "--postgres",
        default=POSTGRES,
        help="server where temporary databases are created (and dropped)",
    )
    parser.add_argument("--redis", default=REDIS, help="for Celery")
    parser.add_argument(
        "--scenario", action="append", choices=NAMES, help="only these (repeatable; default: all)"
    )
    args = parser.parse_args(argv)
    only = {NAMES[name] for name in args.scenario or NAMES}
    sizes = QUICK if args.quick else FULL
    logs, load_before = Path(tempfile.mkdtemp(prefix="overture-bench-logs-")), os.getloadavg()
    log(f"worker logs go to {logs}")

    measurements: list[Measurement] = []
    for store in STORES[args.store]:
        measurements += overture_scenarios.run(store, sizes, args.repeat, args.postgres, logs, only)
    if args.peers:
        measurements += peers.run(
            quick=args.quick,
            repeat=args.repeat,
            postgres=args.postgres,
            redis=args.redis,
            logs=logs,
            only=only,
        )
    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    text = report.write(
        measurements,
        command=command,
        repeat=args.repeat,
        postgres=args.postgres,
        redis=args.redis,
        load_before=load_before,
    )
    print(text)
    if any(m.error for m in measurements):
        log(f"some scenarios failed: see the worker logs in {logs}")
    else:
        shutil.rmtree(logs)


if __name__ == "__main__":
    main()
