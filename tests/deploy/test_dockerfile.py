"""deploy/Dockerfile and .dockerignore: multi-stage, one non-root image with a
health check for master and worker, only what the image needs in the build
context. The health checker is run against a stand-in /proc."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

from tests.deploy.deployfiles import (
    REPO,
    copied_file,
    dockerfile_instructions,
    dockerfile_stages,
    exec_form,
)


def test_multi_stage_with_nightfold_last() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert list(stages)[-1] == "nightfold", "a plain `docker build` gives the nightfold image"
    final = stages["nightfold"]
    assert any(i.keyword == "COPY" and "--from=build" in i.args for i in final)
    # the final stage installs nothing itself: no compiler, no pip cache
    assert not any(i.keyword == "RUN" and "pip" in i.args for i in final)


def test_final_image_is_non_root_with_entrypoint_and_healthcheck() -> None:
    final = dockerfile_stages()["nightfold"]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root user"
    assert exec_form([i.args for i in final if i.keyword == "ENTRYPOINT"][-1]) == ["nightfold"]
    health = [i.args for i in final if i.keyword == "HEALTHCHECK"][-1]
    assert health.endswith('CMD ["nightfold-alive"]')
    assert any(i.keyword == "COPY" and i.args.endswith("/nightfold-alive") for i in final)


def test_plain_syntax_that_every_builder_reads() -> None:
    """No `# syntax=` line (BuildKit would fetch its frontend from Docker Hub) and no
    heredocs (buildah 1.28, Debian's podman, cannot read them): issue 19."""
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert all(ins.heredoc is None for ins in dockerfile_instructions())
    assert "<<" not in text


def test_no_secret_in_the_image() -> None:
    for ins in dockerfile_instructions():
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"PASSWORD|SECRET|_URL", ins.args, re.IGNORECASE), ins


def _dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_build_context_holds_what_copy_needs_and_nothing_else() -> None:
    sources: list[str] = []
    for ins in dockerfile_instructions():
        if ins.keyword != "COPY" or "--from=" in ins.args or ins.heredoc is not None:
            continue
        words = [w for w in ins.args.split() if not w.startswith("--")]
        sources += words[:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert not _dockerignore_excludes(src), f"{src} is excluded by .dockerignore"
        for file in (REPO / src).rglob("*.py") if (REPO / src).is_dir() else []:
            rel = file.relative_to(REPO).as_posix()
            if "__pycache__" not in rel:
                assert not _dockerignore_excludes(rel), rel
    for private in (".env", ".venv/bin/python", ".nightfold/services.env", ".git/config"):
        assert _dockerignore_excludes(private), private
    assert _dockerignore_excludes("common/__pycache__/config.cpython-311.pyc")


def _fake_proc(root: Path, processes: dict[int, tuple[list[str], str]]) -> Path:
    root.mkdir(parents=True)
    for pid, (argv, state) in processes.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        (d / "stat").write_text(f"{pid} (python3) {state} 1 1 1 0 -1\n")
    (root / "self").mkdir(exist_ok=True)
    return root


def _alive(tmp_path: Path, processes: dict[int, tuple[list[str], str]]) -> int:
    tmp_path.mkdir()
    script = tmp_path / "nightfold-alive"
    script.write_text(copied_file("/opt/nightfold/bin/nightfold-alive"))
    proc = _fake_proc(tmp_path / "proc", processes)
    res = subprocess.run(
        [sys.executable, str(script)],
        env={"NIGHTFOLD_ALIVE_PROC": str(proc)},
        capture_output=True,
        timeout=30,
    )
    return res.returncode


def test_health_checker(tmp_path: Path) -> None:
    worker = ["/opt/nightfold/bin/python", "/opt/nightfold/bin/nightfold", "worker", "run"]
    init = ["/sbin/docker-init", "--", "nightfold", "worker", "run"]
    assert _alive(tmp_path / "a", {1: (init, "S"), 7: (worker, "S")}) == 0
    assert _alive(tmp_path / "b", {1: (worker, "R")}) == 0
    assert _alive(tmp_path / "c", {1: (init, "S"), 7: (worker, "Z")}) == 1
    assert _alive(tmp_path / "d", {1: (worker, "T")}) == 1
    assert _alive(tmp_path / "e", {1: (["sleep", "nightfold"], "S")}) == 1
    assert _alive(tmp_path / "f", {}) == 1
