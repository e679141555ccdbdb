"""Every deployment file parses with the parser its consumer uses (or a strict
stand-in): YAML, TOML, JSON, shell, Python, XML, systemd units, crontab."""

from __future__ import annotations

import json
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nightfold.common.config import load_settings
from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    CRON_FILE,
    DEPLOY,
    DOCS,
    ENV_EXAMPLE,
    NIGHTLY_SCRIPT,
    REPO,
    SYSTEMD,
    copied_file,
    dockerfile_instructions,
    load_yaml_documents,
    read_cron,
    read_env_file,
    read_unit,
    valid_schedule,
)

OWNED = ["cron", "systemd", "k8s", "prometheus", "grafana"]


def owned_files(*suffixes: str) -> list[Path]:
    files = [p for d in OWNED for p in (DEPLOY / d).rglob("*") if p.is_file()]
    return sorted(p for p in files if p.name.endswith(suffixes))


@pytest.mark.parametrize(
    "path",
    [COMPOSE_FILE, *owned_files(".yml", ".yaml")],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_owned_folders_hold_only_known_kinds_of_file() -> None:
    """So that the parametrized checks here really see every file."""
    known = (".yml", ".yaml", ".json", ".service", ".timer", ".md", ".example")
    unknown = [
        p
        for p in owned_files("")
        if not p.name.endswith(known) and p != CRON_FILE and p != NIGHTLY_SCRIPT
    ]
    assert not unknown


def test_json_parses() -> None:
    """The Grafana dashboards: there is at least one, and each is a dashboard object.

    Not parametrized over the files, so that losing them all fails rather than
    collecting no test.
    """
    paths = owned_files(".json")
    assert DEPLOY / "grafana" / "dashboards" / "nightfold.json" in paths
    for path in paths:
        dashboard = json.loads(path.read_text())
        assert isinstance(dashboard, dict), path
        assert dashboard.get("uid") and dashboard.get("title"), path
        assert isinstance(dashboard.get("panels"), list) and dashboard["panels"], path


def test_toml_example_is_valid_nightfold_settings() -> None:
    path = SYSTEMD / "nightfold.toml.example"
    tomllib.loads(path.read_text())
    settings = load_settings(env={}, config_file=path)  # unknown keys, bad URLs raise
    assert settings.database_url.startswith("mysql+pymysql://")
    assert settings.broker_url.startswith("amqp://")
    assert settings.store_url.startswith("hbase://")


def test_env_example_parses_and_holds_no_secret() -> None:
    env = read_env_file(ENV_EXAMPLE)
    secrets = [k for k in env if "PASSWORD" in k]
    assert secrets, "the passwords are declared in deploy/env.example"
    assert all(env[k] == "" for k in secrets), "env.example must not carry passwords"


def test_shell_scripts_parse() -> None:
    for script in (
        NIGHTLY_SCRIPT,
        REPO / "deploy" / "local" / "tools",
        REPO / "deploy" / "containers" / "build",
        REPO / "deploy" / "hbase" / "hbase-standalone",
        REPO / "deploy" / "hbase" / "hbase-ready",
    ):
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert script.stat().st_mode & 0o111, f"{script} is executable"
    for dest in ("/usr/local/bin/hbase-standalone", "/usr/local/bin/hbase-ready"):
        subprocess.run(["bash", "-n"], input=copied_file(dest), text=True, check=True)


def test_dockerfile_embedded_files_parse() -> None:
    compile(copied_file("/opt/nightfold/bin/nightfold-alive"), "nightfold-alive", "exec")
    ET.fromstring(copied_file("/opt/hbase/conf/hbase-site.xml").strip())


def test_dockerfile_instructions_are_known() -> None:
    known = {
        "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
        "VOLUME", "USER", "WORKDIR", "ARG", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
    }  # fmt: skip
    for ins in dockerfile_instructions():
        assert ins.keyword in known, f"Dockerfile line {ins.line}: {ins.keyword}"


@pytest.mark.parametrize("path", owned_files(".service", ".timer"), ids=lambda p: p.name)
def test_systemd_units_parse(path: Path) -> None:
    unit = read_unit(path)
    assert "Unit" in unit
    assert ("Service" if path.suffix == ".service" else "Timer") in unit


def test_crontab_parses() -> None:
    env, jobs = read_cron(CRON_FILE)
    assert env["SHELL"] == "/bin/bash"
    assert jobs
    for job in jobs:
        assert valid_schedule(job.schedule), job
        # cron turns an unescaped % into a newline: none may appear in a command
        assert "%" not in job.command.replace("\\%", ""), job.command
    assert CRON_FILE.read_text().endswith("\n"), "cron ignores a last line without newline"


def test_docs_exist() -> None:
    text = DOCS.read_text()
    for heading in ("Running a fleet", "Sizing", "Upgrades", "What was and was not exercised"):
        assert heading in text, heading
