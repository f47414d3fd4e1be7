"""3. and 4. The load: wrk, pgbench, the soak."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import HERE, Record, log
from .db import reset
from .service import Service


def ensure_wrk() -> str:
    """wrk from Debian's package, installed if missing."""
    if not shutil.which("wrk"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        log("wrk is missing: apt-get install wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(sudo + command, env=env, timeout=300, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def idle_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time that was idle over the next `seconds` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(limit: int, threshold: float = 0.85) -> float:
    """Wait (at most `limit` s) until other work leaves the machine mostly idle; answer the idle share."""
    deadline = time.monotonic() + limit
    idle = idle_share()
    while idle < threshold and time.monotonic() < deadline:
        idle = idle_share()
    if idle < threshold:
        log(f"  the machine is busy ({1 - idle:.0%} CPU used by others); measuring anyway")
    return round(idle, 2)


def run_wrk(
    base: str, workload: str, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace
) -> Record:
    """wrk with bench/workload.lua; answers its JSON line (requests, rps, p50_ms, p99_ms, errors, valid)."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(HERE / "workload.lua"), base]
    command += ["--", workload, *map(str, ranges), str(args.write_pct)]  # the script's arguments
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        return {"workload": workload, "failed": "wrk timed out", "valid": False}
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"workload"')), None)
    if line is None:
        return {"workload": workload, "failed": f"wrk: {done.stderr.strip()[-200:]}", "valid": False}
    return dict(json.loads(line))


def run_pgbench(
    pgbench: str,
    url: str,
    scripts: dict[str, Path],
    workload: str,
    *,
    seconds: int,
    ranges: tuple[int, ...],
    args: argparse.Namespace,
) -> Record:
    """pgbench -M prepared with the scripts (get, post; both weighted for the mix): the SQL, no HTTP."""
    smin, smax, cmin, cmax = ranges
    files = {
        "get": [f"{scripts['get']}"],
        "post": [f"{scripts['post']}"],
        "mix": [f"{scripts['get']}@{100 - args.write_pct}", f"{scripts['post']}@{args.write_pct}"],
    }[workload]
    command = [pgbench, "-n", "-M", "prepared", "-c", str(args.connections), "-j", str(args.threads)]
    command += [f"-Dsmin={smin}", f"-Dsmax={smax}", f"-Dcmin={cmin}", f"-Dcmax={cmax}", "-T", str(seconds)]
    command += [x for script in files for x in ("-f", script)]
    # The service's planner settings, so that pgbench runs the service's plans.
    options = " ".join(f"-c {name}={value}" for name, value in args.planner.items())
    with tempfile.TemporaryDirectory(prefix="pgbench-") as logs:
        try:
            done = subprocess.run(
                [*command, "-l", f"--log-prefix={logs}/tx", url],
                env={**os.environ, "PGOPTIONS": options},
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return {"workload": workload, "failed": "pgbench timed out", "valid": False}
        # Per-transaction log lines: client, transaction, latency in µs, script, epoch s, µs.
        lines = [line.split() for f in Path(logs).iterdir() for line in f.read_text().splitlines()]
        latencies = sorted(int(x[2]) / 1000 for x in lines if len(x) > 2 and x[2].isdigit())
    tps = re.search(r"tps = ([\d.]+)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode or not tps or not latencies:
        return {"workload": workload, "failed": f"pgbench: {done.stderr.strip()[-200:]}", "valid": False}
    errors = int(failed[1]) if failed else 0
    return {
        "workload": workload,
        "requests": len(latencies),
        "rps": float(tps[1]),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
        "valid": errors == 0,
    }


def soak(service: Service, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace) -> Record:
    """The mix for `seconds` on a fresh service; its RSS at start, at end, and the highest of 1 s samples."""
    start_mib, processes = service.rss_mib()
    highest, stop = [start_mib], threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            highest.append(service.rss_mib()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_wrk(service.base, "mix", seconds, ranges, args)
    finally:
        stop.set()
        sampler.join(5)
    end_mib = service.rss_mib()[0]
    return {**result, "seconds": seconds, "processes": processes, "rss_mib_start": start_mib,
            "rss_mib_end": end_mib, "rss_mib_max": max(*highest, end_mib)}  # fmt: skip


def describe(record: Record) -> str:
    if "rps" not in record:
        return f"  {record['workload']}: {record['failed']}"
    rss = f", RSS {record['rss_mib']} MiB" if "rss_mib" in record else ""
    return (
        f"  {record['workload']}: {record['rps']:,.0f} req/s, p50 {record['p50_ms']:.1f} ms, "
        f"p99 {record['p99_ms']:.1f} ms, errors {record['errors']}{rss}"
    )


def measure_service(
    service: Service, url: str, ranges: tuple[int, ...], args: argparse.Namespace
) -> tuple[list[Record], str]:
    """Each workload through wrk on freshly reset data (warm-up, then measured), on one fresh service;
    answers the records and a line about its RSS (at start and after each workload)."""
    records = []
    with service:
        (start_mib, processes), after = service.rss_mib(), []
        for workload in args.workloads:
            reset(url, args.data)
            if args.warmup:
                run_wrk(service.base, workload, args.warmup, ranges, args)
            record = run_wrk(service.base, workload, args.duration, ranges, args)
            record["rss_mib"], record["processes"] = service.rss_mib()
            after.append(f"after {workload} {record['rss_mib']}")
            records.append(record)
            log(describe(record))
    return records, f"{start_mib} MiB at start ({processes} process(es)), " + ", ".join(after)


def measure_pgbench(
    pgbench: str, url: str, scripts: dict[str, Path], ranges: tuple[int, ...], args: argparse.Namespace
) -> list[Record]:
    """Each workload through pgbench on freshly reset data (warm-up, then measured)."""
    records = []
    for workload in args.workloads:
        reset(url, args.data)
        if args.warmup:
            run_pgbench(pgbench, url, scripts, workload, seconds=args.warmup, ranges=ranges, args=args)
        records.append(
            run_pgbench(pgbench, url, scripts, workload, seconds=args.duration, ranges=ranges, args=args)
        )
        log(describe(records[-1]))
    return records
