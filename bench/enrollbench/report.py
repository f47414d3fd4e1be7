"""5. Results: the summary over rounds, the table, the chart, the environment, the .md report."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any

from . import Record, log
from .db import connect
from .statements import without_comments


def summarize(records: list[Record], workloads: list[str]) -> list[Record]:
    """Per workload and target: medians over the valid rounds (min..max of req/s), errors, and the ratio."""
    rows = []
    for workload in workloads:
        row: Record = {"workload": workload}
        for target in ("service", "pgbench"):
            runs = [r for r in records if r["target"] == target and r["workload"] == workload]
            good = [r for r in runs if r.get("valid")]
            row[target] = {
                "runs": len(runs),
                "valid": len(good),
                "errors": sum(r.get("errors", 0) for r in runs),
            }
            if good:
                rps = [r["rps"] for r in good]
                row[target].update(
                    rps=statistics.median(rps),
                    rps_min=min(rps),
                    rps_max=max(rps),
                    p50_ms=statistics.median(r["p50_ms"] for r in good),
                    p99_ms=statistics.median(r["p99_ms"] for r in good),
                )
            if rss := [r["rss_mib"] for r in good if "rss_mib" in r]:
                row[target]["rss_mib"] = statistics.median(rss)
        if row["service"].get("rps") and row["pgbench"].get("rps"):
            row["ratio"] = row["service"]["rps"] / row["pgbench"]["rps"]
        rows.append(row)
    return rows


def table(summary: list[Record]) -> str:
    """The summary as a markdown table (readable on a terminal too)."""

    def cells(t: Record) -> list[str]:
        if not t["runs"]:
            return ["-"] * 6
        if "rps" not in t:
            return ["-", "", "", "", f"{t['errors']}", f"{t['valid']}/{t['runs']}"]
        spread = f"{t['rps_min']:,.0f}..{t['rps_max']:,.0f}"
        return [f"{t['rps']:,.0f}", spread, f"{t['p50_ms']:.1f}", f"{t['p99_ms']:.1f}", f"{t['errors']}",
                f"{t['valid']}/{t['runs']}"]  # fmt: skip

    head = ["workload", "service req/s", "min..max", "p50 ms", "p99 ms", "errors", "valid"]
    head += ["pgbench req/s", "min..max", "p50 ms", "p99 ms", "errors", "valid", "service/pgbench", "RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in summary:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        rss = f"{row['service']['rss_mib']:.1f}" if "rss_mib" in row["service"] else "-"
        body = [row["workload"], *cells(row["service"]), *cells(row["pgbench"]), ratio, rss]
        lines.append("| " + " | ".join(body) + " |")
    return "\n".join(lines)


def draw_chart(summary: list[Record], path: Path, title: str, labels: tuple[str, str]) -> bool:
    """Req/s per workload, service against pgbench, min..max over rounds as error bars."""
    try:
        # Optional (bench/requirements.txt), hence imported here; typed once installed.
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        log("matplotlib is not installed: no chart (pip install -r bench/requirements.txt)")
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    width = 0.38
    for i, (target, label, color) in enumerate(
        zip(("service", "pgbench"), labels, ("#2b6cb0", "#a0aec0"), strict=True)
    ):
        stats = [row[target] for row in summary]
        values = [s.get("rps", 0) for s in stats]
        spread = [
            [v - s.get("rps_min", v) for v, s in zip(values, stats, strict=True)],
            [s.get("rps_max", v) - v for v, s in zip(values, stats, strict=True)],
        ]
        xs = [x + (i - 0.5) * width for x in range(len(summary))]
        bars = ax.bar(xs, values, width, yerr=spread, capsize=3, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ratios = [f"\nservice/pgbench {row['ratio']:.2f}" if "ratio" in row else "" for row in summary]
    ax.set_xticks(
        range(len(summary)), [row["workload"].upper() + r for row, r in zip(summary, ratios, strict=True)]
    )
    ax.set_ylabel("requests/s (median of rounds)")
    ax.set_title(title, fontsize=9)
    highest = max([1, *(row[t].get("rps_max", 0) for row in summary for t in ("service", "pgbench"))])
    ax.set_ylim(0, highest * 1.3)  # room for the legend
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def environment(url: str, wrk_version: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    with connect(url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in ("litestar", "msgspec", "asyncpg", "uvicorn", "uvloop", "httptools"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu[1] if cpu else platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres[0] if postgres else "?",
        "wrk": wrk_version,
        "packages": versions,
    }


def report_markdown(result: Record, summary_table: str, rss_lines: list[str]) -> str:
    a, env = result["settings"], result["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    text = [
        f"# Benchmark {result['started']}",
        "",
        f"- Server: `{' '.join(result['server_command'])}`, WORKERS={a['workers']}, "
        f"ACCESS_LOG={str(a['access_log']).lower()}",
        f"- Data: {a['data']['students']:,} students, {a['data']['courses']:,} courses, "
        f"{a['data']['per_student']} enrollments each (seeded in {result['seed_seconds']:.1f} s)",
        f"- Load: {a['connections']} connections, {a['threads']} thread(s), {a['warmup']} s warm-up + "
        f"{a['duration']} s measured per workload, mix = {100 - a['write_pct']}/{a['write_pct']} GET/POST, "
        f"{a['rounds']} round(s), medians",
        f"- Machine: {env['cpus']} CPUs ({env['cpu']}), kernel {env['kernel']}, Python {env['python']}, "
        f"PostgreSQL {env['postgres']}, {env['wrk']}",
        f"- Packages: {packages}",
        f"- pgbench: {result['pgbench_sql']}, -M prepared, one client per connection (scripts in the .json), "
        f"planner settings {a['planner'] or 'the server defaults'} (as the service's sessions)",
        "",
        summary_table,
        "",
        *rss_lines,
    ]
    for method, statements in result["statements"].items():
        text += ["", f"## {method}: {len(statements)} statement(s) logged by Postgres for one request", ""]
        text += [f"- `{' '.join(without_comments(s).split())[:150]} ...`" for s, _ in statements]
    for method, plans in result["plans"].items():
        for plan in plans:
            text += ["", f"### {method}: EXPLAIN (ANALYZE, BUFFERS)", "", "```", plan, "```"]
    return "\n".join(text) + "\n"
