"""deploy/k8s: every manifest validates against the Kubernetes JSON schemas shipped
inside kubernetes-validate (strict: unknown fields fail, as with
`kubectl apply --validate=strict`), the KEDA objects against KEDA's own CRD schemas
(tests/deploy/schemas/keda), and the manifests agree with each other and with
nightfold's settings."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from nightfold.common.config import Settings
from nightfold.common.transport.rabbitmq import DEFAULT_QUEUE
from tests.deploy.deployfiles import (
    K8S,
    REPO,
    dockerfile_stages,
    find_k8s,
    k8s_documents,
    k8s_manifest_files,
    load_yaml_documents,
)

# The oldest Kubernetes we claim (CronJob timeZone and Job podFailurePolicy are both
# there) and the newest the installed kubernetes-validate knows.
K8S_VERSIONS = ["1.30", kubernetes_validate.utils.latest_version()]
KEDA_CRDS = Path(__file__).parent / "schemas" / "keda"
CUSTOM_GROUPS = ("keda.sh/",)


def builtin_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_documents() if not d["apiVersion"].startswith(CUSTOM_GROUPS)]


def custom_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_documents() if d["apiVersion"].startswith(CUSTOM_GROUPS)]


def _id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", builtin_documents(), ids=_id)
def test_builtin_kinds_validate(item: tuple[Path, dict[str, Any]], version: str) -> None:
    _, doc = item
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{_id(item)} against {version}: {where}: {exc.message}")


def test_the_validator_is_strict() -> None:
    """A misspelt field fails: the validation above is not vacuous."""
    doc = copy.deepcopy(find_k8s("Deployment", "nightfold-worker"))
    doc["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON schema that rejects unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from the vendored KEDA CRDs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KEDA_CRDS.glob("*.yaml")):
        for crd in load_yaml_documents(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = version["schema"]["openAPIV3Schema"]
                    out[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return out


@pytest.mark.parametrize("item", custom_documents(), ids=_id)
def test_keda_objects_validate_against_the_crds(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    schemas = crd_schemas()
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no CRD schema for {key}"
    doc = {**doc, "metadata": {}}  # ObjectMeta is the API server's, not the CRD's
    errors = list(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_crd_validation_is_strict() -> None:
    doc = copy.deepcopy(find_k8s("ScaledObject"))
    doc["spec"]["maxReplicas"] = 3
    doc["metadata"] = {}
    schema = crd_schemas()[(doc["apiVersion"], "ScaledObject")]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(doc))


def test_everything_in_one_namespace() -> None:
    for path, doc in k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "nightfold", _id((path, doc))


def test_kustomization_lists_existing_files() -> None:
    kustomization = load_yaml_documents(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    for name in listed:
        assert (K8S / name).is_file(), name
    # the Secret is created from a file kept out of version control, and the
    # migration Job is applied on its own before a rollout
    assert "secret.example.yaml" not in listed
    assert "db-upgrade-job.yaml" not in listed
    assert {p.name for p in k8s_manifest_files()} >= listed


def config() -> dict[str, str]:
    data: dict[str, str] = find_k8s("ConfigMap", "nightfold-config")["data"]
    return data


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def workloads() -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] in ("Deployment", "CronJob", "Job")]


def test_config_names_real_settings() -> None:
    fields = set(Settings.__dataclass_fields__)
    for key in config():
        if key.startswith("NIGHTFOLD_"):
            assert key.removeprefix("NIGHTFOLD_").lower() in fields, key


def test_pods_get_config_and_secrets_and_run_as_the_image_user() -> None:
    final = list(dockerfile_stages().values())[-1]
    user = [i.args for i in final if i.keyword == "USER"][-1]
    uid = int(user.split(":")[0])
    for doc in workloads():
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        for container in spec["containers"]:
            refs = {
                next(iter(ref.values()))["name"] for ref in container["envFrom"]
            }  # fmt: skip
            migration = doc["metadata"]["name"] == "nightfold-db-upgrade"
            secrets = "nightfold-migrate-secrets" if migration else "nightfold-secrets"
            assert refs == {"nightfold-config", secrets}
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_images_are_pinned_to_this_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    kustomization = load_yaml_documents(K8S / "kustomization.yaml")[0]
    assert kustomization["images"][0]["newTag"] == version
    for doc in workloads():
        for container in pod_spec(doc)["containers"]:
            assert container["image"] == f"nightfold:{version}", container["image"]


def test_secret_example_holds_placeholders_only() -> None:
    secret = find_k8s("Secret", "nightfold-secrets")
    for key, value in secret["stringData"].items():
        if "://" in value and "@" in value:
            assert ":CHANGE_ME@" in value, key
    wanted = {"NIGHTFOLD_DATABASE_URL", "NIGHTFOLD_BROKER_URL", "RABBITMQ_MANAGEMENT_URL"}
    assert set(secret["stringData"]) == wanted
    # least privilege: the data-only account runs; only the migration owns the schema
    migrate = find_k8s("Secret", "nightfold-migrate-secrets")
    assert set(migrate["stringData"]) == {"NIGHTFOLD_DATABASE_URL"}
    assert secret["stringData"]["NIGHTFOLD_DATABASE_URL"].startswith(
        "mysql+pymysql://nightfold_app:"
    )
    assert migrate["stringData"]["NIGHTFOLD_DATABASE_URL"].startswith("mysql+pymysql://nightfold:")
    assert ":CHANGE_ME@" in migrate["stringData"]["NIGHTFOLD_DATABASE_URL"]


def test_worker_termination_grace_matches_the_worker() -> None:
    worker = find_k8s("Deployment", "nightfold-worker")
    grace = float(config()["NIGHTFOLD_SHUTDOWN_GRACE_SECONDS"])
    assert grace == Settings().shutdown_grace_seconds
    termination = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace + 10 <= termination <= grace + 60, (grace, termination)
    assert "replicas" not in worker["spec"], "the autoscaler owns spec.replicas"
    args = pod_spec(worker)["containers"][0]["args"]
    assert args[:2] == ["worker", "run"]


def test_master_cronjob_resumes_and_never_overlaps() -> None:
    cron = find_k8s("CronJob", "nightfold-master")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 3, "a crashed master gets new pods that resume the run"
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    final = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert set(final[0]["onExitCodes"]["values"]) == {2, 4, 6}
    assert final[0]["onExitCodes"]["containerName"] == pod["containers"][0]["name"]
    assert pod["containers"][0]["args"] == ["master", "run", "--day", "yesterday"]
    # every retry of a night starts before the next midnight, so `yesterday` is stable
    minute, hour = (int(x) for x in spec["schedule"].split()[:2])
    assert hour * 3600 + minute * 60 + job["activeDeadlineSeconds"] < 24 * 3600
    assert spec["timeZone"] == config()["TZ"]


def test_migration_job() -> None:
    job = find_k8s("Job", "nightfold-db-upgrade")
    assert pod_spec(job)["containers"][0]["args"] == ["db", "upgrade"]
    assert job["spec"]["backoffLimit"] >= 1


def _concurrency() -> int:
    args = pod_spec(find_k8s("Deployment", "nightfold-worker"))["containers"][0]["args"]
    return int(args[args.index("--concurrency") + 1])


def test_keda_scales_the_workers_on_the_work_queue() -> None:
    scaled = find_k8s("ScaledObject", "nightfold-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "nightfold-worker"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert meta["queueName"] == DEFAULT_QUEUE
    assert meta["mode"] == "QueueLength"
    # http: the management API's count includes unacked messages (chunks in progress)
    assert meta["protocol"] == "http"
    assert int(meta["value"]) == _concurrency()
    max_in_flight = int(config()["NIGHTFOLD_MAX_IN_FLIGHT"])
    assert spec["maxReplicaCount"] * _concurrency() <= max_in_flight
    auth = find_k8s("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    secret = find_k8s("Secret", ref["name"])
    assert ref["parameter"] == "host" and ref["key"] in secret["stringData"]


def test_hpa_alternative() -> None:
    hpa = find_k8s("HorizontalPodAutoscaler", "nightfold-worker")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "nightfold-worker")
    max_in_flight = int(config()["NIGHTFOLD_MAX_IN_FLIGHT"])
    assert hpa["spec"]["maxReplicas"] * _concurrency() <= max_in_flight
    worker = pod_spec(find_k8s("Deployment", "nightfold-worker"))["containers"][0]
    assert worker["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"


def test_the_console_deployment_and_its_service() -> None:
    deployment = find_k8s("Deployment", "nightfold-console")
    service = find_k8s("Service", "nightfold-console")
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    args = container["args"]
    assert args[0] == "web" and args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == port
    # inside the cluster only: a ClusterIP Service selecting exactly these pods
    assert service["spec"]["type"] == "ClusterIP"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] == container_port["name"]
    # probes ask /healthz (which reads the database)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    # the operator password: only from its own optional Secret, never the shared one
    (env,) = container["env"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert env["name"] == "NIGHTFOLD_WEB_PASSWORD" and ref["optional"] is True
    assert ref["name"] == "nightfold-console-secrets"
    assert "NIGHTFOLD_WEB_PASSWORD" not in find_k8s("Secret", "nightfold-secrets")["stringData"]
    # its masters write logs: the only writable path is the /tmp volume
    assert args[args.index("--master-logs") + 1].startswith("/tmp/")
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert (
        "console-deployment.yaml" in load_yaml_documents(K8S / "kustomization.yaml")[0]["resources"]
    )
