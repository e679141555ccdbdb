"""Readers for the deployment files: compose (with its variable interpolation),
Dockerfile, crontab, systemd units, Kubernetes manifests, and the list of every
`nightfold` command line they contain. Pure functions; no Docker, no network."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / "env.example"
CRON_FILE = DEPLOY / "cron" / "nightfold"
NIGHTLY_SCRIPT = DEPLOY / "cron" / "nightfold-nightly"
SYSTEMD = DEPLOY / "systemd"
K8S = DEPLOY / "k8s"
DOCS = REPO / "docs" / "deploy.md"

# A day that stands for `$(date ...)` or "yesterday" where a command line computes it.
SAMPLE_DAY = "2026-11-22"


# --------------------------------------------------------------------------- YAML
def load_yaml_documents(path: Path) -> list[Any]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in k8s_manifest_files():
        for doc in load_yaml_documents(path):
            yield path, doc


def find_k8s(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in k8s_documents()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# ------------------------------------------------------------------ compose + env
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a compose env file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=value: {raw!r}"
        out[key.strip()] = value.strip()
    return out


def commented_env_keys(path: Path) -> set[str]:
    """Keys of `#KEY=value` lines: the optional settings an env file documents."""
    return set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE))


class MissingVariable(Exception):
    pass


_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d},
    ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt} and $$."""

    def one(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return env.get(m.group("named"), "")
        braced = _BRACED.match(m.group("braced"))
        if braced is None:
            raise ValueError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = braced.group("name", "op", "arg")
        present = name in env
        nonempty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op in (":-", "-"):
            ok = nonempty if op == ":-" else present
            return env[name] if ok else interpolate(arg, env)
        if op in (":?", "?"):
            ok = nonempty if op == ":?" else present
            if not ok:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        ok = nonempty if op == ":+" else present
        return interpolate(arg, env) if ok else ""

    return _VAR.sub(one, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def required_variables(text: str) -> set[str]:
    """Variables a compose file refuses to do without (${VAR:?...} / ${VAR?...})."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))


def compose_test_env() -> dict[str, str]:
    """deploy/env.example with every required (empty) value filled by a dummy."""
    env = read_env_file(ENV_EXAMPLE)
    return {k: (v or f"test-{k.lower()}") for k, v in env.items()}


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = load_yaml_documents(COMPOSE_FILE)
    assert len(raw) == 1
    result: dict[str, Any] = interpolate_tree(raw[0], compose_test_env() if env is None else env)
    return result


# ------------------------------------------------------------------- Dockerfile
@dataclass
class Instruction:
    keyword: str
    args: str
    heredoc: str | None
    line: int


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    """Instructions with line continuations joined and heredoc bodies attached."""
    lines = (DOCKERFILE.read_text() if text is None else text).splitlines()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        keyword, _, args = line.strip().partition(" ")
        heredoc = None
        m = re.search(r"<<-?'?\"?([A-Z_]+)'?\"?", args)
        if m:
            body = []
            while i < len(lines) and lines[i] != m.group(1):
                body.append(lines[i])
                i += 1
            i += 1  # the terminator
            heredoc = "\n".join(body) + "\n"
        out.append(Instruction(keyword.upper(), args.strip(), heredoc, start + 1))
    return out


def dockerfile_stages() -> dict[str, list[Instruction]]:
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in dockerfile_instructions():
        if ins.keyword == "FROM":
            m = re.search(r"\s+AS\s+(\S+)$", ins.args, re.IGNORECASE)
            assert m, f"Dockerfile line {ins.line}: every stage is named"
            current = stages.setdefault(m.group(1), [])
        if current is not None:
            current.append(ins)
    return stages


def copied_file(destination: str) -> str:
    """The text of the build-context file that ``COPY [--chmod=..] SRC <destination>``
    puts into the image (the Dockerfile has no heredocs: every builder reads it)."""
    for ins in dockerfile_instructions():
        words = [w for w in ins.args.split() if not w.startswith("--")]
        if ins.keyword == "COPY" and "--from=" not in ins.args and words[-1:] == [destination]:
            (src,) = words[:-1]
            return (REPO / src).read_text()
    raise AssertionError(f"no COPY to {destination} in {DOCKERFILE}")


def exec_form(args: str) -> list[str]:
    import json

    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


# ------------------------------------------------------------ systemd and cron
def read_unit(path: Path, *, include_commented: bool = False) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values...]}}; with include_commented,
    `#Key=value` lines (documented alternatives) count too."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if include_commented and re.match(r"^#[A-Z][A-Za-z]+=", line):
            line = line[1:]
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path}: {raw!r}"
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path}: not Key=value in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@dataclass
class CronJob:
    schedule: list[str]
    user: str | None
    command: str
    commented: bool


def read_cron(path: Path, *, system: bool = True) -> tuple[dict[str, str], list[CronJob]]:
    """Variables and jobs of a crontab (system format: a user field after the time)."""
    env: dict[str, str] = {}
    jobs: list[CronJob] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        commented = False
        if re.match(r"^#\s*([0-9*@]|[A-Z][A-Z0-9_]*=)", line):
            commented, line = True, line.lstrip("#").strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if m:
            if not commented:
                env[m.group(1)] = m.group(2)
            continue
        # A commented job is in user-crontab form (no user field).
        if system and not commented:
            parts = line.split(None, 6)
            assert len(parts) == 7, f"{path}: {raw!r}"
            jobs.append(CronJob(parts[:5], parts[5], parts[6], commented))
        else:
            parts = line.split(None, 5)
            assert len(parts) == 6, f"{path}: {raw!r}"
            jobs.append(CronJob(parts[:5], None, parts[5], commented))
    return env, jobs


def commented_cron_variables(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^#([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), re.MULTILINE))


_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def valid_cron_field(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        m = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not m:
            return False
        if m.group(2) is not None and int(m.group(2)) < 1:
            return False
        if m.group(1) != "*":
            bounds = [int(x) for x in m.group(1).split("-")]
            if any(not low <= b <= high for b in bounds) or bounds != sorted(bounds):
                return False
    return True


def valid_schedule(fields: list[str]) -> bool:
    return len(fields) == 5 and all(
        valid_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, _CRON_RANGES, strict=True)
    )


# ------------------------------------------------- every nightfold command line
@dataclass(frozen=True)
class Invocation:
    where: str
    args: tuple[str, ...]  # what follows `nightfold`


_COMPOSE_GLOBAL_WITH_VALUE = {
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--profile",
    "--env-file",
    "--ansi",
    "--progress",
    "--parallel",
}
_COMPOSE_RUN_WITH_VALUE = {
    "-e",
    "--env",
    "--env-from-file",
    "--entrypoint",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "--name",
    "-v",
    "--volume",
    "-p",
    "--publish",
    "-l",
    "--label",
    "--pull",
    "--cap-add",
    "--cap-drop",
}


def compose_service_argv(service: dict[str, Any]) -> list[str]:
    """The argv a compose service's container runs (entrypoint + command)."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        entrypoint = image_entrypoint()
    command = service.get("command", [] if "entrypoint" in service else image_cmd())
    assert isinstance(entrypoint, list) and isinstance(command, list), service
    return [*entrypoint, *command]


def image_entrypoint() -> list[str]:
    return exec_form(_final_stage_value("ENTRYPOINT"))


def image_cmd() -> list[str]:
    return exec_form(_final_stage_value("CMD"))


def _final_stage_value(keyword: str) -> str:
    stages = dockerfile_stages()
    final = list(stages.values())[-1]
    values = [ins.args for ins in final if ins.keyword == keyword]
    assert values, f"final Dockerfile stage has no {keyword}"
    return values[-1]


def nightfold_args(argv: list[str], compose: dict[str, Any]) -> list[str] | None:
    """What follows `nightfold` in a command line that starts with it (after any
    VAR=value, sudo, env or exec), directly or through
    `docker compose ... run [opts] SERVICE args`; None if it runs no nightfold."""
    i = 0
    while i < len(argv) and (
        re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[i]) or argv[i] in _PREFIXES
    ):
        i += 1
    if i >= len(argv):
        return None
    program = argv[i]
    if program == "nightfold" or program.endswith("/bin/nightfold"):
        return argv[i + 1 :]
    if os.path.basename(program) == "docker" and argv[i + 1 : i + 2] == ["compose"]:
        return _compose_run_args(argv[i + 2 :], compose)
    if os.path.basename(program) == "docker" and argv[i + 1 : i + 2] == ["run"]:
        return _docker_run_args(argv[i + 2 :], compose)
    return None


_DOCKER_RUN_FLAGS = {"-d", "--detach", "--rm", "--init", "-i", "-t", "-it", "--read-only"}


def _docker_run_args(rest: list[str], compose: dict[str, Any]) -> list[str] | None:
    """`docker run [opts] IMAGE args` of the nightfold image."""
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        i += 1 if rest[i] in _DOCKER_RUN_FLAGS or "=" in rest[i] else 2
    image, args = rest[i], rest[i + 1 :]
    if image.rsplit("/", 1)[-1].split(":")[0] != "nightfold":
        return None
    return nightfold_args([*image_entrypoint(), *(args or image_cmd())], compose)


_PREFIXES = {"sudo", "env", "exec"}


def _compose_run_args(rest: list[str], compose: dict[str, Any]) -> list[str] | None:
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        i += 2 if rest[i] in _COMPOSE_GLOBAL_WITH_VALUE else 1
    if rest[i : i + 1] != ["run"]:
        return None
    i += 1
    while i < len(rest) and rest[i].startswith("-"):
        i += 2 if rest[i] in _COMPOSE_RUN_WITH_VALUE else 1
    service_name, args = rest[i], rest[i + 1 :]
    service = compose["services"][service_name]
    entrypoint = service.get("entrypoint", image_entrypoint())
    if not args:
        args = service.get("command", image_cmd())
    argv = [*entrypoint, *args]
    return nightfold_args(argv, compose) if argv else None


def split_command(line: str) -> list[str]:
    """shlex split with the shell's `$(date ...)` day replaced by SAMPLE_DAY."""
    line = re.sub(r"\$\(date [^)]*\)", SAMPLE_DAY, line.replace("\\%", "%"))
    return shlex.split(line, comments=False)


def docs_command_lines() -> list[str]:
    """Command lines in the fenced shell blocks of docs/deploy.md."""
    lines: list[str] = []
    in_block = False
    pending = ""
    for raw in DOCS.read_text().splitlines():
        if raw.strip().startswith("```"):
            in_block = not in_block and raw.strip() in ("```sh", "```bash", "```console")
            continue
        if not in_block:
            continue
        line = pending + raw.strip().split("  #", 1)[0].strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line.removeprefix("$ "))
    return lines
