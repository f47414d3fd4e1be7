"""2. The service: the server under test, in its own process group; the probe of its answers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import ROOT, BenchError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request; answers (status, decoded JSON or raw text)."""
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("BENCH_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base + path, payload, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw[:200]


class Service:
    """The server under test, in its own process group; `with` starts it and stops it with its children."""

    def __init__(self, command: list[str], env: dict[str, str], logfile: Path, start_timeout: int) -> None:
        self.command, self.logfile, self.start_timeout = command, logfile, start_timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"  # load goes to this machine only
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + self.start_timeout
            while not self.healthy():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the service did not answer GET /health; its log:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def healthy(self) -> bool:
        try:
            return http(self.base, "GET", "/health")[0] == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def rss_mib(self) -> tuple[float, int]:
        """VmRSS summed over the service's process group (uvicorn and, with WORKERS > 1, its workers):
        (MiB, number of processes)."""
        assert self.proc is not None
        total_kib, count = 0, 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pgrp = int(stat.read_text().rsplit(")", 1)[1].split()[2])
                if pgrp != self.proc.pid:
                    continue
                status = (stat.parent / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue  # the process ended meanwhile
            if found := re.search(r"^VmRSS:\s+(\d+) kB", status, re.M):
                total_kib, count = total_kib + int(found[1]), count + 1
        return round(total_kib / 1024, 1), count

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after 15 s."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group, if any


def seeded_courses(student: int, data: dict[str, int]) -> list[int]:
    """The seeded enrollments: student s takes K consecutive courses from course (s - 1) * K, wrapping."""
    k, m = data["per_student"], data["courses"]
    return [1 + ((student - 1) * k + j) % m for j in range(k)]


def next_course(student: int, data: dict[str, int]) -> int:
    """The course after the student's last seeded one (one it does not have, unless it has them all)."""
    return 1 + (student * data["per_student"]) % data["courses"]


def probe(base: str, student: int, data: dict[str, int]) -> None:
    """GET and POST on one seeded student answer as the contract says; raise BenchError otherwise."""
    seeded, extra = seeded_courses(student, data), next_course(student, data)
    for method, body, expected in (
        ("GET", None, sorted(seeded)),
        ("POST", {"course_ids": [extra, seeded[0]]}, sorted({*seeded, extra})),
    ):
        try:
            status, answer = http(base, method, f"/students/{student}/courses", body)
        except OSError as error:
            raise BenchError(f"{method} /students/{student}/courses failed: {error}") from None
        if status != 200 or not isinstance(answer, list) or [c.get("id") for c in answer] != expected:
            raise BenchError(f"{method} /students/{student}/courses answered {status}: {str(answer)[:200]}")
