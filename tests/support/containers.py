"""Running the nightfold image in containers with podman, for tests/containers.

The image is built by ``make image`` (deploy/containers/build) and named by
``NIGHTFOLD_TEST_IMAGE``; podman is configured by the containers.conf that
``deploy/local/tools containers`` writes (runc, explicit ulimits). Every container
a :class:`Pod` starts carries its own name prefix, and only those are removed
afterwards: nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.services import REPO, in_ci, unique_name

IMAGE_VAR = "NIGHTFOLD_TEST_IMAGE"
CONTAINERS_CONF = REPO / ".nightfold" / "containers" / "containers.conf"


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    conf = os.environ.get("CONTAINERS_CONF") or str(CONTAINERS_CONF)
    env["CONTAINERS_CONF"] = conf
    return env


def image_or_skip() -> str:
    """The image under test; skipped (failed under CI) when there is none to run."""
    import pytest

    image = os.environ.get(IMAGE_VAR)
    why = None
    if not image:
        why = f"{IMAGE_VAR} is not set (`make container-test` builds the image and sets it)"
    elif shutil.which("podman") is None:
        why = "no podman (deploy/local/tools containers)"
    else:
        res = subprocess.run(
            ["podman", "image", "exists", image], env=engine_env(), capture_output=True
        )
        if res.returncode != 0:
            why = f"image {image} is not built (make image)"
    if why is not None:
        if in_ci() and image:
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    assert image is not None
    return image


@dataclass
class Pod:
    """The containers of one test: same image, same environment, host networking
    (the services listen on this machine's loopback)."""

    image: str
    env: Mapping[str, str]
    prefix: str = field(default_factory=lambda: unique_name("nftest-"))
    names: list[str] = field(default_factory=list)

    def podman(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {res.returncode}\n{res.stderr}")
        return res

    def _run_args(self, name: str) -> list[str]:
        flags = ["--name", name, "--network=host", "--init", "--health-interval=disable"]
        for key, value in self.env.items():
            flags += ["-e", f"{key}={value}"]
        return flags

    def once(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``nightfold ARGS`` in a container that is removed when it exits."""
        name = f"{self.prefix}-once-{len(self.names)}"
        self.names.append(name)  # removed at the end if a timeout left it behind
        return self.podman("run", "--rm", *self._run_args(name), self.image, *args,
                           check=False, timeout=timeout)  # fmt: skip

    def start(self, role: str, *args: str) -> str:
        """``nightfold ARGS`` in a detached container named after ``role``."""
        name = f"{self.prefix}-{role}"
        self.podman("run", "-d", *self._run_args(name), self.image, *args)
        self.names.append(name)
        return name

    def state(self, name: str) -> tuple[str, int]:
        """(status, exit code) of a container: ``running``, ``exited``, ..."""
        out = self.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        status, code = out.stdout.split()
        return status, int(code)

    def wait(self, name: str, timeout: float = 300) -> int:
        res = self.podman("wait", name, timeout=timeout)
        return int(res.stdout.strip().splitlines()[-1])

    def logs(self, name: str) -> str:
        res = self.podman("logs", name, check=False)
        return res.stdout + res.stderr

    def healthy(self, name: str) -> bool:
        """The image's HEALTHCHECK, run by hand (its timer needs systemd)."""
        return self.podman("healthcheck", "run", name, check=False).returncode == 0

    def tail(self, lines: int = 30) -> str:
        out = []
        for name in self.names:
            text = self.logs(name).splitlines()[-lines:]
            out.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(out)

    def remove_all(self) -> None:
        for name in self.names:
            self.podman("rm", "-f", "-t", "5", name, check=False)


@contextmanager
def pod(image: str, env: Mapping[str, str]) -> Iterator[Pod]:
    p = Pod(image, env)
    try:
        yield p
    finally:
        p.remove_all()
