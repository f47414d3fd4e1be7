"""Docker cannot run here: check that compose, the Dockerfile and the repo agree; run what the image runs."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from components import HAPROXY_BACKEND, HAPROXY_DEFAULTS, PGBOUNCER_SETTINGS
from helpers import ROOT, bearer, mint_key, running_service

from service.settings import Settings

DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return re.findall(rf"^{name} (.+)$", joined, re.MULTILINE)


def image_env() -> dict[str, str]:
    return dict(pair.split("=", 1) for line in instructions("ENV") for pair in shlex.split(line))


def here(command: list[str]) -> list[str]:
    """A command of the image, run with this interpreter (the venv's, which has the dependencies)."""
    return [sys.executable if word == "python" else word for word in command]


def image_cmd() -> list[str]:
    (cmd,) = instructions("CMD")
    return list(json.loads(cmd))  # the exec form: no shell in between


def healthcheck_command(base_url: str) -> list[str]:
    """The image's HEALTHCHECK command, pointed at `base_url` instead of the image's own port."""
    (healthcheck,) = instructions("HEALTHCHECK")
    command = shlex.split(healthcheck.split(" CMD ", 1)[1])
    image_url = f"http://127.0.0.1:{image_env()['PORT']}/"
    assert any(image_url in word for word in command), "the healthcheck calls the port the service listens on"
    return here([word.replace(image_url, f"{base_url}/") for word in command])


def make_recipe(target: str) -> list[str]:
    """The command a Makefile target runs, with the venv's python spelled `python`."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe, f"no {target} target"
    return shlex.split(recipe.group(1).replace("$(PY)", "python"))


def test_the_migrate_service_runs_the_same_command_as_make_migrate(compose: dict[str, Any]) -> None:
    assert compose["services"]["migrate"]["command"] == make_recipe("migrate")


def test_the_api_starts_only_after_migrate_completed(compose: dict[str, Any]) -> None:
    depends = compose["services"]["api"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_postgres_has_a_healthcheck_and_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_compose_environment_names_are_settings_the_service_reads(compose: dict[str, Any]) -> None:
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "service" / "settings.py").read_text()))
    for name in ("migrate", "api"):
        environment = {key: str(value) for key, value in compose["services"][name]["environment"].items()}
        assert set(environment) <= read, name
        Settings.from_env(environment)  # and their values are valid: no SettingsError
    api = Settings.from_env(compose["services"]["api"]["environment"])
    assert f"{api.port}:{api.port}" in compose["services"]["api"]["ports"]


def test_the_api_command_is_the_module_the_image_runs_and_it_starts(compose: dict[str, Any]) -> None:
    """compose's `command` is the image's CMD, and that command is a runnable entry point."""
    assert compose["services"]["api"]["command"] == image_cmd()
    result = subprocess.run(
        [*here(image_cmd()), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--migrate" in result.stdout


def test_the_image_listens_on_the_port_it_exposes() -> None:
    (exposed,) = instructions("EXPOSE")
    assert exposed.strip() == image_env()["PORT"]
    assert image_env()["HOST"] == "0.0.0.0"  # reachable from outside the container


def copy_the_image_files(app_dir: Path) -> None:
    """What the Dockerfile's COPY lines put in its WORKDIR, and nothing else (no tests, no .venv)."""
    for line in instructions("COPY"):
        source, destination = shlex.split(line)
        target = app_dir / destination
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, target)


def test_the_files_the_image_copies_are_enough_to_migrate_serve_and_pass_the_healthcheck(
    compose: dict[str, Any], empty_database_url: str, tmp_path: Path
) -> None:
    """Compose's migrate command, then the CMD, run from a copy of the image's files only."""
    app_dir = tmp_path / "app"
    copy_the_image_files(app_dir)
    migrated = subprocess.run(
        here(compose["services"]["migrate"]["command"]),
        cwd=app_dir,
        env={"DATABASE_URL": empty_database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied: 0001_students_and_courses"), migrated.stdout
    with running_service(empty_database_url, cwd=app_dir, command=here(image_cmd())) as (_, base):
        healthy = subprocess.run(healthcheck_command(base), capture_output=True, timeout=10, check=False)
        assert healthy.returncode == 0, healthy.stderr
        assert httpx.get(f"{base}/ready").status_code == 200
        key = asyncio.run(mint_key(empty_database_url, "write")).key
        created = httpx.post(
            f"{base}/students", json={"name": "Ada", "email": "ada@example.org"}, headers=bearer(key)
        )
        assert created.status_code == 201, created.text
    down = subprocess.run(healthcheck_command(base), capture_output=True, timeout=10, check=False)
    assert down.returncode != 0, "the healthcheck fails when the service does not answer"


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = instructions("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_scale_profile_runs_haproxy_and_pgbouncer_as_the_tests_do(compose: dict[str, Any]) -> None:
    """deploy/ holds the configurations the compose profile mounts; the tests run tests/components.py's."""
    haproxy = {line.rstrip() for line in (ROOT / "deploy" / "haproxy.cfg").read_text().splitlines()}
    assert set(HAPROXY_DEFAULTS + HAPROXY_BACKEND) <= haproxy
    ini = (ROOT / "deploy" / "pgbouncer.ini").read_text()
    pgbouncer = dict(re.findall(r"^(\w+) = (.*)$", ini, re.MULTILINE))
    assert PGBOUNCER_SETTINGS.items() <= pgbouncer.items()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "service" / "settings.py").read_text()))
    for name in ("api-a", "api-b"):
        service = compose["services"][name]
        assert service["profiles"] == ["scale"]
        assert set(service["environment"]) <= read
        settings = Settings.from_env(service["environment"])
        assert settings.statement_cache_size == 0, (
            "PgBouncer 1.18 in transaction mode: no prepared statements"
        )
        assert settings.shutdown_drain_s > 0, "a rolling restart needs the drain"
        assert settings.database_read_url
        assert f"server s{'ab'.index(name[-1])} {name}:{settings.port} check" in " ".join(haproxy)
