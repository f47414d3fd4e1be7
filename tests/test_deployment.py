"""Docker cannot run here, so check that compose and the Dockerfile agree with the repo."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


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
        assert set(compose["services"][name]["environment"]) <= read, name


def test_the_api_command_is_the_module_the_image_runs(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert cmd
    assert compose["services"]["api"]["command"] == yaml.safe_load(cmd.group(1))
    assert (ROOT / "service" / "__main__.py").exists()


def test_every_path_the_dockerfile_copies_exists_and_it_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "-slim" in dockerfile
