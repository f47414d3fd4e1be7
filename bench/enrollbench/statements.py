"""The service's own statements, from the Postgres log: their plans, and pgbench scripts of them."""

from __future__ import annotations

import re
import time
from pathlib import Path

from service.events.repository import EventQueries
from service.keys.repository import KeyQueries

from .db import connect
from .service import Service, http

# What the service runs in the background, whatever the requests: the event feed's ticks,
# the API key cache's re-reads, retention. Not part of any request.
BACKGROUND = {" ".join(q.sql.split()) for q in (EventQueries.tick, EventQueries.prune, KeyQueries.find)}

Statements = dict[str, list[tuple[str, str]]]
"""Per method (GET, POST): (statement, its logged parameters) for each statement one request ran."""


def logged_statements(text: str) -> list[tuple[str, str]]:
    """(statement, parameters) for each statement in a stretch of the Postgres log written with
    log_min_duration_statement = 0 (extended protocol "execute", simple protocol "statement")."""
    records: list[str] = []
    for line in text.splitlines():  # continuation lines of a record start with a tab
        if line.startswith("\t") and records:
            records[-1] += "\n" + line[1:]
        else:
            records.append(line)
    found: list[tuple[str, str]] = []
    previous_was_statement = False
    for record in records:
        if m := re.search(r"\] LOG:  duration: [\d.]+ ms  (?:execute [^:]*|statement): (.*)", record, re.S):
            found.append((m[1].strip(), ""))
            previous_was_statement = True
            continue
        if previous_was_statement and (m := re.search(r"\] DETAIL:  [Pp]arameters: (.*)", record, re.S)):
            found[-1] = (found[-1][0], m[1].strip())
        previous_was_statement = False
    return found


def capture_statements(service: Service, pg_log: Path, student: int, course: int) -> Statements:
    """The statements the service runs for GET /students/{student}/courses and for a POST of
    [course] there (run a warm-up request first: connections, statement caches, type introspection)."""
    captured: Statements = {}
    for method, body in (("GET", None), ("POST", {"course_ids": [course]})):
        offset = pg_log.stat().st_size
        http(service.base, method, f"/students/{student}/courses", body)
        time.sleep(0.3)  # the pool's release (and its reset, if any) may run after the answer
        with open(pg_log, "rb") as f:
            f.seek(offset)
            logged = logged_statements(f.read().decode(errors="replace"))
        captured[method] = [
            (text, params) for text, params in logged if " ".join(text.split()) not in BACKGROUND
        ]
    return captured


def without_comments(statement: str) -> str:
    return re.sub(r"^\s*--[^\n]*\n?", "", statement, flags=re.M).strip().rstrip(";")


def parameters(logged: str) -> list[tuple[str, str]]:
    """[("1", "'2'"), ("2", "'{11}'")] from "$1 = '2', $2 = '{11}'": numbers and SQL literals."""
    return re.findall(r"\$(\d+) = (NULL|'(?:[^']|'')*')", logged)


def explain(url: str, statements: list[tuple[str, str]], planner: dict[str, str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each data statement, with the parameters it ran with and the
    service's planner settings, in a transaction that is rolled back. Each runs twice; the
    second (warm cache) plan is kept."""
    plans = []
    with connect(url) as conn:
        for name, value in planner.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        for number, (text, logged) in enumerate(statements):
            if not re.match(r"(SELECT|WITH|INSERT|UPDATE|DELETE)\b", without_comments(text), re.I):
                continue  # BEGIN, COMMIT, a pool's reset, ...
            values = ", ".join(value for _, value in parameters(logged))
            conn.execute(f"PREPARE bench_plan_{number} AS {without_comments(text)}")
            for _ in range(2):
                with conn.transaction(force_rollback=True):
                    execute = f"EXECUTE bench_plan_{number}" + (f"({values})" if values else "")
                    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {execute}").fetchall()
            conn.execute(f"DEALLOCATE bench_plan_{number}")
            plans.append(f"{text}\n-- parameters: {logged or 'none'}\n\n" + "\n".join(r[0] for r in rows))
    return plans


def colons_escaped(statement: str) -> str:
    """pgbench -M prepared takes every :name as one of its variables, even inside a string literal
    (e.g. a to_char format 'HH24:MI:SS'): write such colons as E'\\x3a', the same string for Postgres."""

    def escape(literal: re.Match[str]) -> str:
        if ":" not in literal[1]:
            return literal[0]
        return "E'" + literal[1].replace("\\", "\\\\").replace(":", "\\x3a") + "'"

    return re.sub(r"(?<![\w'])'((?:[^']|'')*)'", escape, statement)


def pgbench_scripts(statements: Statements, student: int, course: int, folder: Path) -> dict[str, Path]:
    """pgbench scripts (get, post) that run the service's own statements, in the order it ran them:
    the logged parameter that was the student id becomes a random :sid, the array [course] three
    random course ids, any other parameter stays as logged. Empty if a request ran no statement."""
    header = ["\\set sid random(:smin, :smax)", *(f"\\set c{i} random(:cmin, :cmax)" for i in (1, 2, 3))]
    placeholders = {f"'{student}'": ":sid", f"'{{{course}}}'": "ARRAY[:c1, :c2, :c3]::bigint[]"}
    scripts = {}
    for method, workload in (("GET", "get"), ("POST", "post")):
        commands = []
        for text, logged in statements.get(method, []):
            command = colons_escaped(without_comments(text))
            for number, value in sorted(parameters(logged), key=lambda p: -int(p[0])):  # $10 before $1
                command = command.replace(f"${number}", placeholders.get(value, value))
            commands.append(command + ";")
        if not commands:
            return {}
        scripts[workload] = folder / f"{workload}.sql"
        scripts[workload].write_text("\n".join(header + commands) + "\n")
    return scripts
