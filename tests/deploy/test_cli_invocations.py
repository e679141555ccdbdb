"""Every `nightfold` command line that the compose file, the Dockerfile, the cron
files, the systemd units, the Kubernetes manifests and docs/deploy.md run exists in
the real CLI: each command path answers `--help` (in a subprocess, the installed
`nightfold`), lists every flag used, and click parses the exact arguments."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest

from nightfold.cli.main import cli
from tests.deploy.deployfiles import (
    CRON_FILE,
    NIGHTLY_SCRIPT,
    SAMPLE_DAY,
    SYSTEMD,
    Invocation,
    commented_cron_variables,
    compose_service_argv,
    dockerfile_stages,
    docs_command_lines,
    exec_form,
    image_entrypoint,
    k8s_documents,
    load_compose,
    nightfold_args,
    read_cron,
    read_unit,
    split_command,
)

# The command lines the deployment issue itself spells out.
ISSUE_COMMANDS = [
    "docker compose run --rm master run --day yesterday",
    "nightfold worker run --concurrency 8",
    "nightfold master run --day yesterday",
    "nightfold db upgrade",
]


def _pod_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template", {}).get("spec", {})
    yield from template.get("initContainers", [])
    yield from template.get("containers", [])


@cache
def invocations() -> tuple[Invocation, ...]:
    compose = load_compose()
    found: list[Invocation] = []

    def add(where: str, argv: list[str]) -> None:
        args = nightfold_args(argv, compose)
        assert args is not None, f"{where}: runs no nightfold command: {argv}"
        found.append(Invocation(where, tuple(args)))

    for line in ISSUE_COMMANDS:
        add(f"issue: {line}", split_command(line))

    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("target") == "nightfold":
            add(f"docker-compose.yml services.{name}", compose_service_argv(service))
            for check in (service.get("healthcheck") or {}).get("test", [])[1:2]:
                assert check == "nightfold-alive", "health checks use the image's checker"

    stages = dockerfile_stages()
    final = list(stages.values())[-1]
    cmd = [i for i in final if i.keyword == "CMD"][-1]
    add("Dockerfile ENTRYPOINT + CMD", [*image_entrypoint(), *exec_form(cmd.args)])
    for stage in stages.values():
        for ins in stage:
            if ins.keyword == "RUN":
                for part in re.split(r"&&|;", ins.args):
                    if nightfold_args(split_command(part), compose) is not None:
                        add(f"Dockerfile line {ins.line}", split_command(part))

    # cron: nightfold-nightly runs "$NIGHTFOLD_MASTER_CMD run [--resume-earlier] --day DAY"
    env, jobs = read_cron(CRON_FILE)
    masters = {"cron NIGHTFOLD_MASTER_CMD": env["NIGHTFOLD_MASTER_CMD"]}
    for key, value in commented_cron_variables(CRON_FILE).items():
        if key == "NIGHTFOLD_MASTER_CMD":
            masters["cron #NIGHTFOLD_MASTER_CMD"] = value
    script = NIGHTLY_SCRIPT.read_text()
    default = re.search(r"\$\{NIGHTFOLD_MASTER_CMD:-([^}]*)\}", script)
    assert default, "nightfold-nightly has a default master command"
    masters["nightfold-nightly default"] = default.group(1)
    assert re.search(r'"\$\{master\[@\]\}" run "\$\{resume\[@\]\}" --day "\$day"', script)
    assert "resume=(--resume-earlier)" in script
    for where, value in masters.items():
        add(where, [*split_command(value), "run", "--day", SAMPLE_DAY])
        add(where, [*split_command(value), "run", "--resume-earlier", "--day", SAMPLE_DAY])
    for job in jobs:
        assert "nightfold-nightly" in job.command, job.command

    for unit in sorted(SYSTEMD.glob("*.service")):
        sections = read_unit(unit, include_commented=True)
        for line in sections["Service"].get("ExecStart", []):
            add(f"{unit.name} ExecStart", split_command(line.lstrip("-@:+!")))

    for path, doc in k8s_documents():
        for container in _pod_containers(doc):
            argv = [*container.get("command", image_entrypoint()), *container.get("args", [])]
            add(f"{path.name} {doc['kind']}/{container['name']}", argv)
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            if probe:
                assert probe == ["nightfold-alive"], probe

    for line in docs_command_lines():
        argv = split_command(line)
        if nightfold_args(argv, compose) is not None:
            add(f"docs/deploy.md: {line}", argv)
    return tuple(found)


def resolve(args: tuple[str, ...]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """Walk the click groups: (command path, command, remaining arguments)."""
    command: click.Command = cli
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"no command `nightfold {' '.join([*path, rest[0]])}`"
        path.append(rest.pop(0))
        command = sub
    return tuple(path), command, rest


def test_every_kind_of_file_was_searched() -> None:
    wheres = " ".join(i.where for i in invocations())
    for source in (
        "issue:",
        "docker-compose.yml services.worker",
        "docker-compose.yml services.master",
        "docker-compose.yml services.migrate",
        "Dockerfile",
        "cron",
        "nightfold-nightly",
        "nightfold-master.service",
        "nightfold-worker@.service",
        "master-cronjob.yaml",
        "worker-deployment.yaml",
        "db-upgrade-job.yaml",
        "docs/deploy.md",
    ):
        assert source in wheres, source


@pytest.mark.parametrize("inv", invocations(), ids=lambda i: i.where)
def test_arguments_parse(inv: Invocation) -> None:
    path, command, rest = resolve(inv.args)
    assert path or rest, inv
    if isinstance(command, click.Group) and not rest:
        pytest.fail(f"{inv.where}: `nightfold {' '.join(path)}` needs a subcommand")
    try:
        command.make_context(" ".join(["nightfold", *path]), list(rest))
    except click.exceptions.Exit as exc:  # --help / --version
        assert exc.exit_code == 0
    except click.ClickException as exc:
        pytest.fail(f"{inv.where}: nightfold {' '.join(inv.args)}: {exc.format_message()}")


@pytest.mark.parametrize(
    "args",
    [
        ("worker", "run", "--concurency", "2"),
        ("worker", "run", "--concurrency", "0"),
        ("master", "run", "--day", "2026-13-01"),
        (
            "master",
            "start",
        ),
    ],
)
def test_a_wrong_command_line_is_caught(args: tuple[str, ...]) -> None:
    """The check above is not vacuous."""
    with pytest.raises((click.ClickException, AssertionError)):
        path, command, rest = resolve(args)
        command.make_context(" ".join(["nightfold", *path]), list(rest))


def _nightfold_exe() -> list[str]:
    exe = Path(sys.executable).with_name("nightfold")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nightfold"]


def _help(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_nightfold_exe(), *path, "--help"], capture_output=True, text=True, timeout=60
    )


def test_each_command_answers_help_and_lists_the_flags_used() -> None:
    flags: dict[tuple[str, ...], set[str]] = {}
    for inv in invocations():
        path, _, rest = resolve(inv.args)
        flags.setdefault(path, set()).update(a.split("=", 1)[0] for a in rest if a.startswith("-"))
    paths = sorted(flags)
    assert ("master", "run") in paths and ("worker", "run") in paths and ("db", "upgrade") in paths
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(paths, pool.map(_help, paths), strict=True))
    for path, res in results.items():
        shown = f"nightfold {' '.join(path)} --help"
        assert res.returncode == 0, f"{shown}: exit {res.returncode}: {res.stderr}"
        assert "Usage:" in res.stdout, shown
        for flag in sorted(flags[path]):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", res.stdout), (
                f"{shown} does not list {flag}"
            )
