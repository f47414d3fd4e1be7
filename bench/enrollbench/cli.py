"""Benchmark the enrollment endpoints end to end: `make bench` (issue 5).

One run, top to bottom (every step has a time limit; on Ctrl-C or any failure the
processes this script started are stopped and the database is thrown away):

1. Database: a fresh PostgreSQL 16 (the embedded `pgserver`, in a temp dir, with
   synchronous_commit=off) or a fresh database on the server of $BENCH_DATABASE_URL;
   migrated with the project's migrations (`python -m service.migrate apply`); seeded
   with generate_series (only the contract's columns; the seeded enrollments are
   deterministic and carry enrolled_at = 2000-01-01); VACUUM ANALYZE.
2. Probe: the service, started as deployed (`python -m service`), answers one GET and
   one POST right. The statements it ran for them are read from the Postgres log, shown
   with EXPLAIN (ANALYZE, BUFFERS), and turned into pgbench scripts (embedded database
   only; otherwise pgbench runs bench/get.sql and bench/post.sql, the ceiling peer's SQL).
3. Rounds (--rounds, the order alternates): the service under wrk (GET, POST, 90/10 mix)
   and pgbench running the same SQL without HTTP, each workload on data reset to the
   seeded state. The service's RSS after each.
4. Soak (--soak seconds of the mix on a fresh service): its RSS at start and end.
5. Results: a table on stdout; bench/results/<time>.json and <time>.md; bench/results/chart.png.
   Exit status 1 if any measured run had an error (a non-2xx answer or a socket error).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from service.db import planner_settings
from service.settings import Settings

from . import DEFAULT_DATA, HERE, SCALE_DATA, WORKLOADS, BenchError, Record, log
from .db import log_statements, migrate, mint_api_key, open_database, pgbench_path, reset, seed
from .feed import measure_feed
from .load import ensure_wrk, measure_pgbench, measure_service, soak, wait_quiet
from .report import draw_chart, environment, report_markdown, summarize, table
from .service import Service, next_course, probe
from .statements import Statements, capture_statements, explain, pgbench_scripts, without_comments

EXAMPLES = """examples:
  make bench                                              # default data, 1 round, 60 s soak
  make bench BENCH_ARGS="--rounds 3"                      # medians of 3 alternating rounds
  make bench BENCH_ARGS="--scale --rounds 2"              # 1M students, 10M enrollments
  make bench BENCH_ARGS="--duration 3 --warmup 1 --soak 10"   # a quick look
  BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres make bench
  .venv/bin/python bench/bench.py --server-cmd "python ../shared/perf/peers/ceiling/app.py"
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--students", type=int, help="students to seed (default 10000; 1M with --scale)")
    data.add_argument("--courses", type=int, help="courses to seed (default 200; 1000 with --scale)")
    data.add_argument("--per-student", type=int, help="enrollments per student (default 5; 10 with --scale)")
    data.add_argument("--scale", action="store_true", help="1M students, 1000 courses, 10M enrollments")
    data.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="create the fresh database on this server (unix socket or loopback only) instead of "
        "starting an embedded one; default $BENCH_DATABASE_URL",
    )
    load = p.add_argument_group("load")
    load.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from get,post,mix")
    load.add_argument("--duration", type=int, default=10, help="seconds measured per workload (10)")
    load.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each (2)")
    load.add_argument("--connections", type=int, default=32, help="wrk connections = pgbench clients (32)")
    load.add_argument("--threads", type=int, default=1, help="wrk threads = pgbench -j (1)")
    load.add_argument("--write-pct", type=int, default=10, help="share of POSTs in the mix, in %% (10)")
    load.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians are reported (1)")
    load.add_argument(
        "--soak", type=int, default=60, help="seconds of the mix for the RSS soak; 0 skips (60)"
    )
    load.add_argument(
        "--feed", type=int, default=10, help="seconds of each events-feed measurement; 0 skips (10)"
    )
    load.add_argument("--no-pgbench", action="store_true", help="measure the service only")
    load.add_argument(
        "--quiet-wait",
        type=int,
        default=10,
        help="before each measurement, wait up to this many seconds for the machine to be idle (10)",
    )
    server = p.add_argument_group("server")
    server.add_argument("--workers", type=int, default=1, help="uvicorn worker processes: WORKERS (1)")
    server.add_argument(
        "--access-log",
        action="store_true",
        help="keep the JSON access log on (ACCESS_LOG=true, as deployed); off by default, like the "
        "peers and pgbench, which write none",
    )
    server.add_argument(
        "--server-cmd",
        help="serve with this command instead of `python -m service` (run from the project root, with "
        "DATABASE_URL, HOST, PORT and WORKERS in its environment), e.g. a peer for comparison",
    )
    load.add_argument(
        "--pgbench-sql",
        choices=("service", "bench"),
        default="service",
        help="what pgbench runs: the service's own statements, taken from the Postgres log (default; "
        "embedded database only), or bench/get.sql and post.sql (the ceiling peer's)",
    )
    server.add_argument("--start-timeout", type=int, default=60, help="seconds to wait for /health (60)")
    p.add_argument("--results", type=Path, default=HERE / "results", help="output folder (bench/results)")
    args = p.parse_args(argv)

    args.workloads = [w for w in args.workloads.split(",") if w]
    if not args.workloads or not set(args.workloads) <= set(WORKLOADS):
        p.error(f"--workloads: choose from {','.join(WORKLOADS)}")
    for name in ("duration", "connections", "threads", "rounds", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if not 0 <= args.write_pct <= 100:
        p.error("--write-pct must be between 0 and 100")
    args.data = {**(SCALE_DATA if args.scale else DEFAULT_DATA)}
    args.data.update({k: v for k, v in vars(args).items() if k in DEFAULT_DATA and v is not None})
    if not 1 <= args.data["per_student"] <= args.data["courses"] or args.data["students"] < 2:
        p.error("need at least 2 students and 1 <= --per-student <= --courses")
    return args


# --- The steps of a run ------------------------------------------------------------------------------


@dataclass
class Run:
    """What the steps share: the options, the fresh database, and how to start the server under test."""

    args: argparse.Namespace
    started: datetime
    url: str
    server_command: list[str]
    server_env: dict[str, str]
    ranges: tuple[int, int, int, int]  # students min..max, courses min..max
    service_logs: Iterator[Path]

    def service(self) -> Service:
        """A fresh server under test (`with` starts it), logging to a file of its own."""
        return Service(self.server_command, self.server_env, next(self.service_logs), self.args.start_timeout)


@dataclass
class Probed:
    """What the probe learnt: the statements per request, their plans, and what pgbench runs."""

    statements: Statements
    plans: dict[str, list[str]]
    scripts: dict[str, Path]
    pgbench_sql: str


@dataclass
class Measured:
    """The records of the rounds, the soak's, and the RSS lines under the table."""

    records: list[Record] = field(default_factory=list)
    rss_lines: list[str] = field(default_factory=list)
    soaked: Record | None = None


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does: the finally blocks clean up."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))


def fresh_database(
    args: argparse.Namespace, tmp: Path, cleanup: contextlib.ExitStack
) -> tuple[str, Path | None, float]:
    """Step 1: a fresh database, migrated, seeded, vacuumed: its URL, the server's log file if we
    can read it, and the seconds seeding took."""
    url, pg_log = open_database(args.database_url, tmp, cleanup)
    log(f"database {url}")
    migrate(url)
    os.environ["BENCH_API_KEY"] = mint_api_key(url)  # wrk and the probes inherit it
    seed_seconds = seed(url, args.data)
    log(f"seeded {args.data} in {seed_seconds:.1f} s")
    return url, pg_log, seed_seconds


def server_under_test(
    args: argparse.Namespace, started: datetime, url: str, server_command: list[str], tmp: Path
) -> Run:
    """How the steps start the server; sets args.planner, the planner settings of the service's
    sessions, for EXPLAIN and pgbench (none for another server)."""
    server_env = {
        "DATABASE_URL": url,
        "WORKERS": str(args.workers),
        "ACCESS_LOG": str(args.access_log).lower(),
    }
    service_settings = Settings.from_env({**os.environ, **server_env})
    args.planner = {} if args.server_cmd else planner_settings(service_settings)
    ranges = (1, args.data["students"], 1, args.data["courses"])
    service_logs = (tmp / f"service-{n}.log" for n in itertools.count())
    return Run(args, started, url, server_command, server_env, ranges, service_logs)


def probe_service(run: Run, pg_log: Path | None, tmp: Path) -> Probed:
    """Step 2: right answers; the statements behind them (from the Postgres log, when we can read
    it), their plans, pgbench scripts of them."""
    data = run.args.data
    student, course = 2, next_course(2, data)
    statements: Statements = {}
    log_statements(run.url, pg_log is not None)
    with run.service() as service:
        probe(service.base, 1, data)  # also the warm-up for the capture
        if pg_log is not None:
            statements = capture_statements(service, pg_log, student, course)
    log_statements(run.url, False)
    reset(run.url, data)
    plans = {method: explain(run.url, found, run.args.planner) for method, found in statements.items()}
    for method, found in statements.items():
        shown = "; ".join(" ".join(without_comments(text).split())[:70] for text, _ in found)
        log(f"{method}: {len(found)} statement(s) per request: {shown}")
    scripts = pgbench_scripts(statements, student, course, tmp) if run.args.pgbench_sql == "service" else {}
    pgbench_sql = "the service's own statements" if scripts else "bench/get.sql and post.sql"
    scripts = scripts or {"get": HERE / "get.sql", "post": HERE / "post.sql"}
    log(f"pgbench runs {pgbench_sql}")
    return Probed(statements, plans, scripts, pgbench_sql)


def measure_rounds(run: Run, pgbench: str | None, scripts: dict[str, Path]) -> Measured:
    """Step 3: the service under wrk, pgbench on the same SQL; the order alternates."""
    args, measured = run.args, Measured()
    for round_number in range(1, args.rounds + 1):
        targets = ["service", "pgbench"] if round_number % 2 else ["pgbench", "service"]
        for target in targets:
            if target == "pgbench" and pgbench is None:
                continue
            idle = wait_quiet(args.quiet_wait)
            log(f"round {round_number}/{args.rounds}: {target} (machine {idle:.0%} idle before)")
            if target == "service":
                found, rss_line = measure_service(run.service(), run.url, run.ranges, args)
                measured.rss_lines.append(f"- RSS, round {round_number}: {rss_line}")
            else:
                assert pgbench is not None
                found = measure_pgbench(pgbench, run.url, scripts, run.ranges, args)
            measured.records += [
                {**r, "target": target, "round": round_number, "idle_before": idle} for r in found
            ]
    return measured


def soak_service(run: Run, measured: Measured) -> None:
    """Step 4 (unless --soak 0): a long mix on a fresh service, RSS at its start and end."""
    args = run.args
    if not args.soak:
        return
    reset(run.url, args.data)
    idle = wait_quiet(args.quiet_wait)
    log(f"soak: {args.soak} s of the mix on a fresh service (machine {idle:.0%} idle before)")
    with run.service() as service:
        soaked = {**soak(service, args.soak, run.ranges, args), "idle_before": idle}
    if "rps" in soaked:
        measured.rss_lines.append(
            f"- Soak, {soaked['seconds']} s of the mix: {soaked['rps']:,.0f} req/s, "
            f"errors {soaked['errors']}; RSS (MiB, {soaked['processes']} process(es)) "
            f"start {soaked['rss_mib_start']}, end {soaked['rss_mib_end']}, "
            f"max {soaked['rss_mib_max']}"
        )
    else:
        measured.rss_lines.append(f"- Soak failed: {soaked['failed']}")
    measured.soaked = soaked


def feed_service(run: Run, measured: Measured) -> None:
    """Step 4b (unless --feed 0): consumers tailing the feed while wrk writes; GETs beside idle long polls."""
    if not run.args.feed or run.args.server_cmd:
        return
    reset(run.url, run.args.data)
    idle = wait_quiet(run.args.quiet_wait)
    log(f"feed: {run.args.feed} s per part on a fresh service (machine {idle:.0%} idle before)")
    measured.rss_lines += measure_feed(run.service(), run.args.feed, run.ranges, run.args)


def collect(run: Run, probed: Probed, measured: Measured, seed_seconds: float, wrk_version: str) -> Record:
    """Step 5, while the database is still there: everything the .json keeps."""
    excluded = ("database_url", "results", "server_cmd")
    return {
        "started": run.started.isoformat(timespec="seconds"),
        "server_command": run.server_command,
        "settings": {k: v for k, v in vars(run.args).items() if k not in excluded},
        "environment": environment(run.url, wrk_version),
        "seed_seconds": round(seed_seconds, 1),
        "statements": probed.statements,
        "pgbench_sql": probed.pgbench_sql,
        "pgbench_scripts": {name: path.read_text() for name, path in probed.scripts.items()},
        "plans": probed.plans,
        "records": measured.records,
        "soak": measured.soaked,
        "summary": summarize(measured.records, run.args.workloads),
    }


def publish(run: Run, result: Record, measured: Measured) -> int:
    """Step 5, after the cleanup: the table on stdout, results/<time>.json and .md, the chart;
    answers the exit status (1 if any measured run or the soak had errors)."""
    args, started, summary = run.args, run.started, result["summary"]
    summary_table = table(summary)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stamp}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.results / f"{stamp}.md").write_text(report_markdown(result, summary_table, measured.rss_lines))
    data = args.data
    title = (
        f"{data['students']:,} students, {data['per_student']} courses each; {args.connections} connections; "
        f"{args.duration} s per workload; {args.rounds} round(s); {started:%Y-%m-%d}"
    )
    served_by = " ".join(Path(part).name for part in run.server_command)  # python -m service, ...
    labels = (f"{served_by}, over HTTP", f"pgbench: {result['pgbench_sql']}, no HTTP")
    charted = draw_chart(summary, args.results / "chart.png", title, labels)

    print(f"\n{title}\n\n{summary_table}\n\n" + "\n".join(measured.rss_lines))
    print(
        f"\nresults: {args.results / stamp}.json, .md"
        + (f", {args.results / 'chart.png'}" if charted else "")
    )
    soaked = measured.soaked
    invalid = [r for r in measured.records if not r.get("valid")] + (
        [soaked] if soaked and not soaked.get("valid") else []
    )
    if invalid:
        print(f"INVALID: {len(invalid)} run(s) had errors or failed", file=sys.stderr)
        return 1
    return 0


# --- The run, top to bottom ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    started = datetime.now(UTC)
    server_command = shlex.split(args.server_cmd) if args.server_cmd else [sys.executable, "-m", "service"]
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="enrollment-bench-")))
        wrk_version = ensure_wrk()
        pgbench = None if args.no_pgbench else pgbench_path()

        # 1. A fresh database: migrated, seeded, vacuumed.
        url, pg_log, seed_seconds = fresh_database(args, tmp, cleanup)
        run = server_under_test(args, started, url, server_command, tmp)

        # 2. Probe: right answers; the statements behind them, their plans, pgbench scripts of them.
        probed = probe_service(run, pg_log, tmp)

        # 3. Rounds: the service under wrk, pgbench on the same SQL; the order alternates.
        measured = measure_rounds(run, pgbench, probed.scripts)

        # 4. Soak: a long mix on a fresh service, RSS at its start and end; then the events feed.
        soak_service(run, measured)
        feed_service(run, measured)

        # 5. Results (the .json's contents need the database; the files are written after the cleanup).
        result = collect(run, probed, measured, seed_seconds, wrk_version)
    return publish(run, result, measured)


def entry_point() -> int:
    """main, with a step's failure (exit status 2) and Ctrl-C (130) told in one line."""
    try:
        return main()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
