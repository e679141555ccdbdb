"""A real Prometheus and Pushgateway (Debian's packages, ``make tools``) for one test:
own ports, own TSDB directory under the test's tmp dir, stopped by pid afterwards.

The scrape configuration is deploy/prometheus/prometheus.yml with its service
discovery replaced by static targets on this machine (the job names, honor_labels
and the rule file stay the repo's), at a 1 s scrape and evaluation interval.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.promql import ALERTS_FILE, PROMETHEUS_FILE
from tests.support.scrape import free_port
from tests.support.services import in_ci


def binaries_or_skip() -> tuple[str, str]:
    import pytest

    found = shutil.which("prometheus"), shutil.which("prometheus-pushgateway")
    if None in found:
        why = "no prometheus / prometheus-pushgateway (make tools installs Debian's)"
        if in_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return found  # type: ignore[return-value]


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode()) if "/api/" in url else resp.read().decode()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            _get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s: {log.read_text()[-2000:]}")


def scrape_config(targets: Mapping[str, list[str]], pushgateway: str) -> dict[str, Any]:
    """The repo's prometheus.yml with static targets: ``targets`` maps a job name of
    it (nightfold-worker, nightfold-master) to host:port addresses."""
    doc = yaml.safe_load(PROMETHEUS_FILE.read_text())
    doc["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["rule_files"] = [str(ALERTS_FILE)]
    jobs = []
    for job in doc["scrape_configs"]:
        name = job["job_name"]
        if name == "prometheus":
            continue
        static = [pushgateway] if name == "pushgateway" else targets[name]
        kept = {k: v for k, v in job.items() if not k.endswith("_sd_configs")}
        kept["static_configs"] = [{"targets": static}]
        jobs.append(kept)
    doc["scrape_configs"] = jobs
    return doc


@dataclass
class Prometheus:
    url: str
    pushgateway_url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``expr`` evaluates to."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        res = _get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        assert res["status"] == "success", (expr, res)
        data = res["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(s["value"][1]) for s in self.query(expr)]

    def has_data(self, expr: str) -> bool:
        """Some sample with a number (not NaN) in the result."""
        return any(not math.isnan(v) for v in self.values(expr))

    def label_values(self, label: str, match: str) -> list[str]:
        q = urllib.parse.urlencode({"match[]": match})
        res = _get(f"{self.url}/api/v1/label/{label}/values?{q}")
        assert res["status"] == "success", res
        values: list[str] = res["data"]
        return values

    def rules(self) -> list[dict[str, Any]]:
        res = _get(f"{self.url}/api/v1/rules")
        return [r for g in res["data"]["groups"] for r in g["rules"]]

    def firing(self, alert: str) -> list[dict[str, str]]:
        return [s["metric"] for s in self.query(f'ALERTS{{alertname="{alert}"}}')]

    def wait(self, what: str, expr: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.has_data(expr):
                return
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus: timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def prometheus(tmp: Path, targets: Mapping[str, list[str]]) -> Iterator[Prometheus]:
    """A Pushgateway and a Prometheus scraping it and ``targets``; stopped afterwards."""
    prom_bin, push_bin = binaries_or_skip()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        push_port = free_port()
        push_log = tmp / "pushgateway.log"
        procs.append(subprocess.Popen(
            [push_bin, f"--web.listen-address=127.0.0.1:{push_port}"],
            stdout=push_log.open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        push = f"127.0.0.1:{push_port}"
        _wait_ready(f"http://{push}/-/ready", procs[-1], push_log)
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(targets, push)))
        port = free_port()
        log = tmp / "prometheus.log"
        procs.append(subprocess.Popen(
            [prom_bin, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={tmp / 'tsdb'}"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        _wait_ready(f"http://127.0.0.1:{port}/-/ready", procs[-1], log)
        yield Prometheus(f"http://127.0.0.1:{port}", f"http://{push}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
