"""docker-compose.yml: valid against the Compose Specification (and `docker compose
config` where the client has the compose plugin), credentials only from the env
file, and the shape the deployment issue asks for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from nightfold.common.config import Settings
from tests.deploy.deployfiles import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    REPO,
    MissingVariable,
    commented_env_keys,
    compose_test_env,
    dockerfile_stages,
    interpolate,
    load_compose,
    load_yaml_documents,
    read_env_file,
    required_variables,
)


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as vendored in check-jsonschema."""
    path = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_validates_against_compose_spec(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_check_catches_a_typo(compose: dict[str, Any]) -> None:
    """The validation above is not vacuous: an unknown service key fails it."""
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["worker"] = {**compose["services"]["worker"], "stop_grace": "45s"}
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert list(validator.iter_errors(broken))


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    res = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return res.returncode == 0


@pytest.mark.skipif(
    not _docker_compose_available(), reason="docker client without the compose plugin"
)
def test_docker_compose_config(tmp_path: Path) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in compose_test_env().items()))
    res = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_credentials_come_only_from_the_env_file() -> None:
    text = COMPOSE_FILE.read_text()
    required = required_variables(text)
    assert {"MARIADB_PASSWORD", "RABBITMQ_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required
    declared = read_env_file(ENV_EXAMPLE)
    assert required <= set(declared), "every required variable is in deploy/env.example"
    optional = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-", text))
    assert optional <= set(declared) | commented_env_keys(ENV_EXAMPLE)
    # with env.example as shipped (empty passwords) compose refuses to run
    with pytest.raises(MissingVariable):
        load_compose(read_env_file(ENV_EXAMPLE))
    # no literal password anywhere: every password-like value is an interpolation
    secrets = list(re.finditer(r"^\s*([A-Z_]*(?:PASSWORD|PASS)):\s+(\S+)", text, re.MULTILINE))
    assert len(secrets) >= 4
    for m in secrets:
        assert m.group(2).startswith("${"), m.group(0)
    userinfo = re.findall(r"://([^@\n]*)@", text)
    assert len(userinfo) >= 2
    for credentials in userinfo:
        assert "${" in credentials, f"credentials in a URL: {credentials}"


def test_interpolation_helper() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A:-x}${E:-y}${E-z}${U-w}$$A$A", env) == "1yw$A1"
    assert interpolate("${A:+set}${E:+no}${E+yes}", env) == "setyes"
    with pytest.raises(MissingVariable):
        interpolate("${E:?need E}", env)


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mariadb", "rabbitmq", "hbase", "migrate", "worker", "master"} <= set(services)
    assert {"prometheus", "grafana"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    for name in ("mariadb", "rabbitmq", "hbase"):
        assert "healthcheck" in services[name], name


def test_one_image_for_master_worker_and_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[s]["image"] for s in ("migrate", "worker", "master")}
    assert len(images) == 1
    for s in ("migrate", "worker", "master"):
        build = services[s]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert (REPO / build["context"] / build["dockerfile"]).is_file()
        assert services[s]["init"] is True


def test_migration_gates_the_workers_and_the_master(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["mariadb"]["condition"] == "service_healthy"
    for name in ("worker", "master"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["rabbitmq"]["condition"] == "service_healthy"
        assert deps["hbase"]["condition"] == "service_healthy"


def test_worker_scales_and_stops_gracefully(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # `--scale worker=8` needs no fixed name and no host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "unless-stopped"
    assert worker["command"][:2] == ["worker", "run"]
    grace = float(
        worker["environment"].get(
            "NIGHTFOLD_SHUTDOWN_GRACE_SECONDS", Settings().shutdown_grace_seconds
        )
    )
    assert grace == Settings().shutdown_grace_seconds
    stop = seconds(worker["stop_grace_period"])
    assert grace + 10 <= stop <= grace + 60, (grace, stop)
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_master_runs_on_demand_with_a_restart_policy(compose: dict[str, Any]) -> None:
    master = compose["services"]["master"]
    # `docker compose run --rm master run --day yesterday` works exactly as written
    assert master["entrypoint"] == ["nightfold", "master"]
    assert master["command"] == ["run", "--day", "yesterday"]
    assert master["restart"].startswith("on-failure")
    assert master["profiles"], "a plain `docker compose up` does not start the master"


def test_observability_is_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    binds = [m.split(":")[0] for m in mounts if m.startswith("./")]
    assert "./deploy/prometheus" in binds
    assert "./deploy/grafana/provisioning" in binds
    for bind in binds:
        assert (REPO / bind).exists(), bind


def test_host_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_defaults_are_nightfold_settings(compose: dict[str, Any]) -> None:
    """Every NIGHTFOLD_* variable compose sets names a real setting."""
    fields = set(Settings.__dataclass_fields__)
    env = compose["services"]["worker"]["environment"]
    for key in env:
        if key.startswith("NIGHTFOLD_"):
            assert key.removeprefix("NIGHTFOLD_").lower() in fields, key


def test_build_targets_exist(compose: dict[str, Any]) -> None:
    stages = dockerfile_stages()
    targets = {s["build"]["target"] for s in compose["services"].values() if "build" in s}
    assert targets == {"nightfold", "hbase"}
    assert targets <= set(stages)


def test_prometheus_and_grafana_provisioning(compose: dict[str, Any]) -> None:
    (prometheus,) = load_yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    # the rule files sit beside prometheus.yml, in the folder compose mounts
    # (tests/deploy/test_observability.py checks the rules themselves)
    for rule_file in prometheus["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file(), rule_file
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    for name, service in (("nightfold-worker", "worker"), ("nightfold-master", "master")):
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [service] and service in compose["services"]
        assert sd["port"] == 9100
    (datasources,) = load_yaml_documents(
        DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    )
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    (dashboards,) = load_yaml_documents(
        DEPLOY / "grafana" / "provisioning" / "dashboards" / "nightfold.yml"
    )
    (provider,) = dashboards["providers"]
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana_mounts


def test_least_privilege_database_accounts(compose: dict[str, Any]) -> None:
    # Masters and workers use the data-only account; only the migration owns the schema
    services = compose["services"]

    def db_user(name: str) -> str:
        url = services[name]["environment"]["NIGHTFOLD_DATABASE_URL"]
        return str(url).split("://", 1)[1].split(":", 1)[0]

    assert db_user("migrate") == services["mariadb"]["environment"]["MARIADB_USER"]
    assert db_user("worker") == db_user("master") == "nightfold_app"
    # and every other setting of the migration is the shared one
    shared = dict(services["worker"]["environment"])
    migrate = dict(services["migrate"]["environment"])
    shared.pop("NIGHTFOLD_DATABASE_URL")
    migrate.pop("NIGHTFOLD_DATABASE_URL")
    assert migrate == shared
    # The account is made by the init script the mariadb service mounts, with DML only
    (mount,) = [v for v in services["mariadb"]["volumes"] if "initdb" in str(v)]
    script = REPO / str(mount).split(":", 1)[0]
    text = script.read_text()
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON" in text and "'nightfold_app'" in text
    assert "ALL" not in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_console_service(compose: dict[str, Any]) -> None:
    """The web console: the nightfold image, the data-only account, on the host's
    loopback only, read-only unless the operator password comes from the env file."""
    services = compose["services"]
    console = services["console"]
    assert console["image"] == services["worker"]["image"]
    assert console["command"][:1] == ["web"]
    args = console["command"]
    # inside its container it listens on every interface; the host publishes loopback only
    assert args[args.index("--host") + 1] == "0.0.0.0"
    port = args[args.index("--port") + 1]
    (published,) = console["ports"]
    assert published.startswith("127.0.0.1:") and published.endswith(f":{port}")
    url = console["environment"]["NIGHTFOLD_DATABASE_URL"]
    assert str(url).split("://", 1)[1].startswith("nightfold_app:")
    text = COMPOSE_FILE.read_text()
    assert "NIGHTFOLD_WEB_PASSWORD: ${NIGHTFOLD_WEB_PASSWORD:-}" in text
    assert "NIGHTFOLD_WEB_PASSWORD" in commented_env_keys(ENV_EXAMPLE)
    assert console["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # its masters log under /tmp, like every writable path of the image
    assert args[args.index("--master-logs") + 1].startswith("/tmp/")
