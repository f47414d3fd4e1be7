"""The code of `make bench` (bench/bench.py runs `cli.entry_point`), in the order a run uses it:

- db: the fresh database, its migrations, seeding and resets
- service: the server under test, started and stopped; the probe of its answers
- statements: the service's own statements, from the Postgres log: their plans, and pgbench scripts
- load: wrk, pgbench, the soak
- report: the summary, the table, the chart, the .md
- cli: the arguments, and the run top to bottom (`main`)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # bench/
ROOT = HERE.parent
WORKLOADS = ("get", "post", "mix")
SEEDED_AT = "2000-01-01T00:00:00Z"
DEFAULT_DATA = {"students": 10_000, "courses": 200, "per_student": 5}
SCALE_DATA = {"students": 1_000_000, "courses": 1_000, "per_student": 10}

Record = dict[str, Any]
"""One measurement (or a summary row): JSON-shaped, written to results/<time>.json as it is."""


class BenchError(Exception):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
