"""Real infrastructure for the scale-out tests: PgBouncer, HAProxy, a PostgreSQL primary and
its streaming replica, each a real process the test starts and stops.

PgBouncer and HAProxy are Debian packages, installed with apt-get when missing (as
root or with password-less sudo), the way `make bench` installs wrk. A machine that
cannot install them skips those tests with the reason; under `.ci/run`
(SCALE_TESTS_REQUIRED=1) that is a failure instead. PostgreSQL comes from the pgserver
wheel of the dev extra, so it is always there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

# .ci/run sets it: there, a component that cannot be installed fails the run instead of skipping.
REQUIRED = os.environ.get("SCALE_TESTS_REQUIRED") == "1"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def unavailable(reason: str) -> None:
    """Skip (a developer's machine without root), or fail where the component must exist (CI)."""
    if REQUIRED:
        pytest.fail(f"{reason} (SCALE_TESTS_REQUIRED=1: CI must run this test)")
    pytest.skip(reason)


def program(name: str, package: str) -> str:
    """The path of `name`, installing Debian's `package` when it is missing."""
    found = _which(name)
    if found is None:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        if sudo and not shutil.which("sudo"):
            unavailable(f"{name} is not installed and this user cannot apt-get install {package}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
            done = subprocess.run(
                sudo + command, env=env, capture_output=True, text=True, timeout=600, check=False
            )
            if done.returncode != 0:
                unavailable(
                    f"{name} is missing and `{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
                )
        found = _which(name)
        if found is None:
            unavailable(f"apt-get installed {package} but {name} is not on the PATH")
    assert found is not None
    return found


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# PostgreSQL refuses to run as root, and so does PgBouncer: both run as this user then.
def service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists  # noqa: PLC0415 - pgserver's own: the embedded server runs so

    ensure_user_exists("pgserver")
    return "pgserver"


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory the service user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = service_user()
    if user is not None:
        shutil.chown(path, user, user)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def server_address(url: str) -> tuple[str, int]:
    """(host or unix socket directory, port) of a postgresql:// URL."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    return host, parts.port or 5432


def with_server(url: str, host: str, port: int) -> str:
    """The URL's user and database on another server (TCP)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return f"postgresql://{user}@{host}:{port}{parts.path}"


class PgBouncer:
    """PgBouncer 1.18 in transaction mode in front of one PostgreSQL server, on 127.0.0.1.

    PgBouncer refuses startup parameters it does not know; the service sends
    statement_timeout, random_page_cost and jit, so they are ignored here and set on the
    database instead (README, "Scaling out").
    """

    def __init__(self, workdir: Path, upstream_url: str, *, pool_size: int = 20) -> None:
        self.binary = program("pgbouncer", "pgbouncer")
        self.workdir, self.port = workdir, free_port()
        host, port = server_address(upstream_url)
        user = urlsplit(upstream_url).username or "postgres"
        (workdir / "users.txt").write_text(f'"{user}" ""\n')
        self.config = workdir / "pgbouncer.ini"
        self.config.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {workdir / 'users.txt'}\n"
            f"default_pool_size = {pool_size}\n"
            f"admin_users = {user}\n"
            + "".join(f"{key} = {value}\n" for key, value in PGBOUNCER_SETTINGS.items())
        )
        self.log = workdir / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """`database_url`'s database, through this PgBouncer."""
        return with_server(database_url, "127.0.0.1", self.port)

    def transactions(self, database: str) -> int:
        """How many transactions PgBouncer has passed to `database` (its admin console's SHOW STATS)."""
        from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - test-only dependency

        psql = [str(POSTGRES_BIN_PATH / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        query = ["-At", "-F", ",", "-c", "SHOW STATS", "pgbouncer"]
        shown = subprocess.run([*psql, *query], capture_output=True, text=True, timeout=10, check=True)
        rows = [line.split(",") for line in shown.stdout.splitlines()]
        return sum(int(row[1]) for row in rows if row[0] == database)  # database, total_xact_count, ...

    def start(self) -> PgBouncer:
        user = service_user()
        for path in self.workdir.iterdir():
            if user is not None:
                shutil.chown(path, user, user)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, str(self.config)], stdout=log, stderr=subprocess.STDOUT, user=user
            )
        wait_for_port(self.port, self.process, "pgbouncer", self.log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGINT)  # SIGINT: PgBouncer's immediate shutdown


@contextmanager
def pgbouncer(upstream_url: str, *, pool_size: int = 20) -> Iterator[PgBouncer]:
    with scratch_dir("pgbouncer-") as workdir:
        bouncer = PgBouncer(workdir, upstream_url, pool_size=pool_size).start()
        try:
            yield bouncer
        finally:
            bouncer.stop()


# What makes a rolling restart lose nothing; deploy/haproxy.cfg has the same (test_deployment.py).
HAPROXY_DEFAULTS = [
    "defaults",
    "    mode http",
    "    timeout connect 2s",
    "    timeout client 60s",
    "    timeout server 60s",  # long polls wait up to 30 s
    "    timeout http-keep-alive 10s",
    "    retries 3",
    "    option redispatch 1",
    "    retry-on conn-failure empty-response",
]
HAPROXY_BACKEND = [
    "    hash-type consistent",
    "    option httpchk GET /ready",
    "    http-check expect status 200",
    "    default-server inter 200ms fastinter 200ms downinter 200ms fall 2 rise 2",
]
# PgBouncer's settings; deploy/pgbouncer.ini has the same (test_deployment.py).
PGBOUNCER_SETTINGS = {
    "pool_mode": "transaction",
    "max_client_conn": "2000",
    "ignore_startup_parameters": "statement_timeout,random_page_cost,jit",
}


class HAProxy:
    """HAProxy in front of service processes, health-checking their /ready.

    The settings that make a rolling restart lose nothing (docs/scaling.md): a process that
    fails /ready twice, 200 ms apart, gets no new request; a request whose connection
    fails or closes before any answer is retried on another process (`retry-on`,
    `option redispatch`): the service drains on SIGTERM, so such a request was never
    processed.
    """

    def __init__(self, workdir: Path, servers: list[int], *, balance: str = "roundrobin") -> None:
        self.binary = program("haproxy", "haproxy")
        self.port = free_port()
        self.socket = workdir / "admin.sock"
        lines = [
            "global",
            "    maxconn 4096",
            f"    stats socket {self.socket} level admin",
            *HAPROXY_DEFAULTS,
            "frontend api",
            f"    bind 127.0.0.1:{self.port}",
            "    default_backend service",
            "backend service",
            f"    balance {balance}",
            *HAPROXY_BACKEND,
            *(f"    server s{i} 127.0.0.1:{port} check" for i, port in enumerate(servers)),
        ]
        self.config = workdir / "haproxy.cfg"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = workdir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, self.process, "haproxy", self.log)
        return self

    def _rows(self) -> list[list[str]]:
        """`show stat` rows of the backend's servers (CSV: name 1, stot 7, wretr 15, wredis 16, status 17)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
        return [row for row in rows if row[0] == "service" and row[1] != "BACKEND"]

    def states(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it: UP, DOWN, ..."""
        return {row[1]: row[17] for row in self._rows()}

    def stats(self) -> dict[str, dict[str, int]]:
        """Per server: sessions sent to it, requests retried, requests redispatched to another."""
        return {
            row[1]: {"sessions": int(row[7]), "retries": int(row[15] or 0), "redispatches": int(row[16] or 0)}
            for row in self._rows()
        }

    def wait_until(self, server: str, state: str, timeout: float = 20) -> float:
        """Wait until `server` is in `state`; answers the seconds it took."""
        start = time.monotonic()
        while not self.states().get(server, "").startswith(state):
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{server} is not {state} after {timeout} s: {self.states()}")
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


class Postgres:
    """A PostgreSQL server of the pgserver wheel's binaries in its own directory, on 127.0.0.1."""

    def __init__(self, data: Path) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - test-only dependency

        self.bin, self.data, self.port = POSTGRES_BIN_PATH, data, free_port()
        self.user = service_user()
        if self.user is not None:  # as pgserver does: let that user reach the binaries in the venv
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions  # noqa: PLC0415

            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        self.log = data.parent / f"{data.name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr[-2000:]}")

    def initdb(self) -> Postgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=utf8")
        return self

    def start(self) -> Postgres:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: the processes end at once, connections break."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def replica(self, data: Path) -> Postgres:
        """A streaming replica of this server: pg_basebackup -R, started."""
        replica = Postgres(data)
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        return replica.start()
