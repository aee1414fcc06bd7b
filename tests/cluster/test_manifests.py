"""ADP's Kubernetes manifests, rendered from its configuration (``adp cluster manifests``),
checked offline against the real schemas: the dask-kubernetes operator's CRDs (from its
wheel, with jsonschema), Kubernetes' own OpenAPI definitions (kubernetes-validate, strict),
the operator's own code for the labels and environment it adds, ``kubectl kustomize`` for
the committed base and overlay, and the image's Dockerfile against the project's install."""

from __future__ import annotations

import copy
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask.config
import pytest
import yaml
from ci_support import need_in_ci
from click.testing import CliRunner

from adp.cluster.cli import HEADER, cluster, write
from adp.cluster.kube_settings import (
    DEFAULTS,
    PART_OF,
    SECRET_ENV,
    SECRETS_DIR,
    SERVICE_SECRET_ENV,
    Resources,
    kubernetes_settings,
    read_alerts,
    read_job,
)
from adp.cluster.manifests import render
from adp.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERNETES = CLUSTER / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "production"
ALERTS = CLUSTER / "monitoring" / "alerts.yaml"
EXAMPLES = REPO / "examples"
TESTS = REPO / "tests"
#: The Kubernetes version whose OpenAPI definitions the core objects must satisfy.
KUBERNETES_VERSION = "1.37"
DASK_KINDS = {"DaskCluster", "DaskAutoscaler", "DaskJob"}
CORE_KINDS = {"Deployment", "Service", "ConfigMap"}


@pytest.fixture
def package_defaults() -> Iterator[None]:
    """The config the committed manifests are rendered with: ADP's defaults (adp/adp.yaml),
    whatever the developer's own dask config says."""
    shipped = yaml.safe_load((REPO / "adp" / "adp.yaml").read_text())["adp"]
    pinned = {
        "adp.kubernetes": shipped.get("kubernetes", {}),
        "adp.cluster.threads-per-worker": shipped["cluster"]["threads-per-worker"],
        "adp.cluster.worker-environ": shipped["cluster"]["worker-environ"],
        "adp.service.port": shipped["service"]["port"],
    }
    with dask.config.set(pinned):
        yield


def _recorded_command(folder: Path) -> list[str]:
    """The command line under the header of a rendered folder's kustomization.yaml."""
    lines = (folder / "kustomization.yaml").read_text().splitlines()
    assert lines[0] == f"# {HEADER}"
    return shlex.split(lines[1].removeprefix("# "))


def _render_as_recorded(command: list[str]) -> list[dict[str, Any]]:
    jobs = [REPO / command[i + 1] for i, arg in enumerate(command) if arg == "--job"]
    alerts = [REPO / command[i + 1] for i, arg in enumerate(command) if arg == "--alerts"]
    rules = read_alerts(alerts[0]) if alerts else []
    cwd = Path.cwd()
    os.chdir(REPO)  # the ConfigMaps hold the files as read, whatever the working directory
    try:
        return render(jobs=[os.path.relpath(j, REPO) for j in jobs], alerts=rules)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """A render using every option: a namespace, labels, environment from Secrets, an
    image with its own tag, and jobs that run, search and adapt."""
    folder = tmp_path_factory.mktemp("jobs")
    adaptive = folder / "nightly-adaptive.yaml"
    spec = yaml.safe_load((EXAMPLES / "s3-lake.yaml").read_text())
    spec["cluster"] = {"adapt": {"minimum": 2, "maximum": 9}, "threads_per_worker": 2}
    adaptive.write_text(yaml.safe_dump(spec))
    settings = kubernetes_settings(
        {
            "name": "team-a",
            "namespace": "analytics",
            "image": "registry.internal:5000/adp/adp:2026.1",
            "env": {"AWS_ENDPOINT_URL": "http://minio:9000"},
            "env-from": ["s3-credentials"],
            "labels": {"release": "prometheus"},
            "worker": {"replicas": 3, "env": {"OMP_NUM_THREADS": "2"}},
            "adapt": {"minimum": 2, "maximum": 8},
        }
    )
    jobs = [EXAMPLES / "s3-lake.yaml", EXAMPLES / "search.yaml", adaptive]
    return render(settings, jobs=jobs, alerts=read_alerts(ALERTS))


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render(jobs=[EXAMPLES / "s3-lake.yaml"], alerts=read_alerts(ALERTS))


@pytest.fixture(scope="module")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` -> openAPIV3Schema of the CRDs the dask-kubernetes wheel ships."""
    import dask_kubernetes

    folder = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
    schemas = {}
    for path in folder.glob("*/crds/*.yaml"):
        # the C build of PyYAML's safe loader: the CRDs are 900 kB of YAML
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    assert {kind for _, kind in schemas} >= DASK_KINDS
    return schemas


def _crd_errors(obj: dict[str, Any], schemas: dict[tuple[str, str], Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schemas[obj["apiVersion"], obj["kind"]])
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.fixture(scope="module", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads its 1.8 MB of definitions on every call: read them once."""
    import functools

    from kubernetes_validate import utils

    original = utils.schema_contents
    utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        utils.schema_contents = original


def _strict_errors(obj: dict[str, Any]) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']} {'.'.join(map(str, exc.path))}: {exc.message}"
    return None


def _pods(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template in ``obj``: (role, pod spec)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "DaskCluster":
        return [("scheduler", spec["scheduler"]["spec"]), ("worker", spec["worker"]["spec"])]
    if obj["kind"] == "DaskJob":
        inner = spec["cluster"]["spec"]
        return [
            ("job", spec["job"]["spec"]),
            ("scheduler", inner["scheduler"]["spec"]),
            ("worker", inner["worker"]["spec"]),
        ]
    if obj["kind"] == "Deployment":
        return [("service", spec["template"]["spec"])]
    return []


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- schemas ------------------------------------------------------------------------------
def test_dask_resources_validate_against_the_operators_crds(
    default: list[dict[str, Any]], rich: list[dict[str, Any]], crd_schemas: dict
) -> None:
    seen = set()
    for obj in default + rich:
        if obj["kind"] in DASK_KINDS:
            assert _crd_errors(obj, crd_schemas) == [], obj["metadata"]["name"]
            seen.add(obj["kind"])
    assert seen == DASK_KINDS
    # the schema is live: what the operator would refuse is refused here
    broken = copy.deepcopy(_kind(default, "DaskCluster")[0])
    broken["spec"]["worker"]["replicas"] = "two"
    del broken["spec"]["scheduler"]["service"]
    assert len(_crd_errors(broken, crd_schemas)) == 2


def test_pods_and_core_objects_validate_strictly_against_kubernetes_schemas(
    default: list[dict[str, Any]], rich: list[dict[str, Any]]
) -> None:
    problems, kinds = [], set()
    for obj in default + rich:
        if obj["kind"] in CORE_KINDS:
            problems.append(_strict_errors(obj))
            kinds.add(obj["kind"])
        for role, pod in _pods(obj):  # the CRDs' schemas take unknown fields; Pod does not
            problems.append(
                _strict_errors(
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}, "spec": pod}
                )
            )
        if obj["kind"] in {"DaskCluster", "DaskJob"}:
            spec = obj["spec"] if obj["kind"] == "DaskCluster" else obj["spec"]["cluster"]["spec"]
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
            problems.append(_strict_errors({**service, "spec": spec["scheduler"]["service"]}))
    assert [p for p in problems if p] == []
    assert kinds == CORE_KINDS
    typo = copy.deepcopy(_kind(default, "Deployment")[0])
    typo["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    assert "livenessprobe" in (_strict_errors(typo) or "")


def test_monitoring_objects_are_well_formed(default: list[dict[str, Any]]) -> None:
    import jsonschema

    named = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    monitor = {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": named,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {
                        "type": "object",
                        "required": ["matchLabels"],
                        "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path", "interval"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"const": "/metrics"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            },
                        },
                    },
                },
            },
        },
    }
    rule = {
        "type": "object",
        "required": ["expr"],
        "properties": {"alert": {"type": "string"}, "expr": {"type": "string", "minLength": 1}},
        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    }
    group = {
        "type": "object",
        "required": ["name", "rules"],
        "properties": {"rules": {"type": "array", "minItems": 1, "items": rule}},
    }
    rules = {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": named,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": group}},
            },
        },
    }
    monitors = _kind(default, "ServiceMonitor")
    prometheus_rules = _kind(default, "PrometheusRule")
    assert len(monitors) == 2 and len(prometheus_rules) == 1
    for obj in monitors:
        jsonschema.validate(obj, monitor)
    jsonschema.validate(prometheus_rules[0], rules)
    # the alerts are cluster/monitoring/alerts.yaml's, with ADP's labels added
    assert prometheus_rules[0]["spec"] == read_alerts(ALERTS)[0]["spec"]
    assert prometheus_rules[0]["metadata"]["labels"][PART_OF] == "adp"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**monitors[0], "spec": {"selector": {"matchLabels": {}}}}, monitor)


# -- what the operator makes of them --------------------------------------------------------
def test_one_service_monitor_selects_every_adp_scheduler(rich: list[dict[str, Any]]) -> None:
    """The scheduler Services the operator creates (for the DaskCluster and for each
    DaskJob's cluster), built with the operator's own functions, are all selected."""
    from dask_kubernetes.operator.controller import controller as op

    def labels_of(meta: dict[str, Any], *more: dict[str, Any]) -> dict[str, str]:
        labels = op._get_labels(SimpleNamespace(labels=meta.get("labels", {})))
        for extra in more:
            labels.update(extra.get("metadata", {}).get("labels", {}))
        return labels

    clusters = _kind(rich, "DaskCluster")
    for job in _kind(rich, "DaskJob"):  # as daskjob_create_components does
        spec = job["spec"]["cluster"]
        labels = labels_of(job["metadata"], spec)
        name = job["metadata"]["name"]
        worker, scheduler = spec["spec"]["worker"], spec["spec"]["scheduler"]
        clusters.append(op.build_cluster_spec(name, worker, scheduler, {}, labels))
    assert len(clusters) == 4
    monitor = next(m for m in _kind(rich, "ServiceMonitor") if "jobLabel" in m["spec"])
    wanted = monitor["spec"]["selector"]["matchLabels"]
    for obj in clusters:  # as daskcluster_create_components does
        name, scheduler = obj["metadata"]["name"], obj["spec"]["scheduler"]
        labels = labels_of(obj["metadata"], scheduler)
        service = op.build_scheduler_service_spec(name, scheduler["service"], {}, labels)
        pod = op.build_scheduler_deployment_spec(name, scheduler["spec"], {}, labels)
        assert wanted.items() <= service["metadata"]["labels"].items(), name
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "team-a"
        pod_labels = pod["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), name
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    # and nothing else: not the service, not the workers
    adp_service = _kind(rich, "Service")[0]
    assert not wanted.items() <= adp_service["metadata"]["labels"].items()
    for obj in clusters:
        worker = labels_of(obj["metadata"], obj["spec"]["worker"])
        assert not wanted.items() <= {**worker, "dask.org/component": "worker"}.items()
    service_monitor = next(m for m in _kind(rich, "ServiceMonitor") if m is not monitor)
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= adp_service["metadata"]["labels"].items()


def test_a_job_spec_runs_unchanged_inside_a_dask_job(rich: list[dict[str, Any]]) -> None:
    from dask_kubernetes.operator.controller import controller as op

    from adp.jobs.cli import run, search
    from adp.jobs.spec import JobSpec

    jobs = {j["metadata"]["name"]: j for j in _kind(rich, "DaskJob")}
    maps = {m["metadata"]["name"]: m for m in _kind(rich, "ConfigMap")}
    assert set(jobs) == {"s3-lake", "search", "nightly-adaptive"}
    for name, job in jobs.items():
        pod = job["spec"]["job"]["spec"]
        (runner,) = pod["containers"]
        command, path = runner["args"][1], runner["args"][2]
        assert runner["args"][0] == "adp" and path == f"/jobs/{name}.yaml"
        # the command line parses as `adp run` / `adp search` parse it
        (run if command == "run" else search).make_context(command, runner["args"][2:])
        mount = next(m for m in runner["volumeMounts"] if m["mountPath"] == "/jobs")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        text = maps[volume["configMap"]["name"]]["data"][f"{name}.yaml"]
        spec = JobSpec.from_text(text)  # the spec as written, and valid
        assert (command == "search") == (spec.search is not None and spec.output is None)
        assert pod["restartPolicy"] == "Never"
        # the operator injects the scheduler address of the job's own cluster
        built = op.build_job_pod_spec(name, name, "analytics", pod, {}, {})
        address = _env(built["spec"]["containers"][0])["DASK_SCHEDULER_ADDRESS"]
        assert address == f"tcp://{name}-scheduler.analytics.svc.cluster.local:8786"
        assert "DASK_SCHEDULER_ADDRESS" not in _env(runner)
    assert (EXAMPLES / "s3-lake.yaml").read_text() == maps["s3-lake-spec"]["data"]["s3-lake.yaml"]
    # the spec's cluster section shapes the job's cluster
    worker = jobs["s3-lake"]["spec"]["cluster"]["spec"]["worker"]
    assert worker["replicas"] == 1  # cluster: {n_workers: 1}
    adaptive = jobs["nightly-adaptive"]["spec"]["cluster"]["spec"]["worker"]
    args = adaptive["spec"]["containers"][0]["args"]
    assert adaptive["replicas"] == 2 and args[args.index("--nthreads") + 1] == "2"
    scalers = {a["metadata"]["name"]: a["spec"] for a in _kind(rich, "DaskAutoscaler")}
    assert scalers == {
        "team-a": {"cluster": "team-a", "minimum": 2, "maximum": 8},
        "nightly-adaptive": {"cluster": "nightly-adaptive", "minimum": 2, "maximum": 9},
    }
    assert jobs["search"]["spec"]["cluster"]["spec"]["worker"]["replicas"] == 2  # job.workers


def test_dask_and_adp_commands_parse_as_their_clis_parse_them(
    rich: list[dict[str, Any]],
) -> None:
    from distributed.cli import dask_scheduler, dask_worker

    from adp.service.cli import serve

    commands = {"scheduler": dask_scheduler.main, "worker": dask_worker.main, "serve": serve}
    checked = set()
    for obj in rich:
        for role, pod in _pods(obj):
            args = pod["containers"][0]["args"]
            name = args[1]
            if name in commands:
                params = commands[name].make_context(name, args[2:]).params
                checked.add(name)
                if name == "scheduler":
                    assert params["preload"] == ("adp.observe.plugins",)
                if name == "serve":
                    assert params["scheduler"] == "tcp://team-a-scheduler:8786"
    assert checked == set(commands)
    (dask_cluster,) = _kind(rich, "DaskCluster")
    worker = _env(dask_cluster["spec"]["worker"]["spec"]["containers"][0])
    assert worker["OMP_NUM_THREADS"] == "2"  # adp.kubernetes.worker.env
    assert worker["MALLOC_TRIM_THRESHOLD_"] == "1073741824"  # adp.cluster.worker-environ
    assert worker["AWS_ENDPOINT_URL"] == "http://minio:9000"  # adp.kubernetes.env


# -- pods ----------------------------------------------------------------------------------
def test_every_pod_has_resources_probes_and_the_images_user(
    default: list[dict[str, Any]], rich: list[dict[str, Any]]
) -> None:
    from importlib.metadata import version

    uid = int(_dockerfile_user())
    images = {id(o): f"{DEFAULTS['image']}:{version('adp')}" for o in default}
    images.update({id(o): "registry.internal:5000/adp/adp:2026.1" for o in rich})
    roles = set()
    for obj in default + rich:
        for role, pod in _pods(obj):
            roles.add(role)
            assert pod["securityContext"]["runAsUser"] == uid
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"] + pod.get("initContainers", []):
                resources = container["resources"]
                assert {"cpu", "memory"} <= resources["requests"].keys(), role
                assert "memory" in resources["limits"], role
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["image"] == images[id(obj)]
            for container in pod["containers"]:
                assert "livenessProbe" in container, role
                ports = {p["name"] for p in container.get("ports", [])}
                if ports:  # it serves: ready when its health endpoint answers
                    probes = [container["readinessProbe"], container["livenessProbe"]]
                    assert {p["httpGet"]["port"] for p in probes} <= ports, role
                else:
                    assert role == "job" and "exec" in container["livenessProbe"]
    assert roles == {"scheduler", "worker", "job", "service"}


def test_the_runners_liveness_probe_fails_when_its_scheduler_is_gone(
    default: list[dict[str, Any]],
) -> None:
    job = _kind(default, "DaskJob")[0]
    command = job["spec"]["job"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
    assert command[0] == "python"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"tcp://127.0.0.1:{listening.getsockname()[1]}"
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
        alive = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30)
    gone = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, capture_output=True)
    assert alive.returncode == 0
    assert gone.returncode != 0 and b"ConnectionRefusedError" in gone.stderr


# -- secrets -------------------------------------------------------------------------------
def test_audit_and_registry_databases_come_from_the_secret(rich: list[dict[str, Any]]) -> None:
    from adp.config import Settings

    fake = {key: f"postgresql+psycopg://adp@db/{key}" for key in SECRET_ENV.values()}
    fake.update({key: f"postgresql+psycopg://adp@db/{key}" for key in SERVICE_SECRET_ENV.values()})
    checked = set()
    for obj in rich:
        for role, pod in _pods(obj):
            container = pod["containers"][0]
            env = _env(container)
            if role == "worker":
                assert not any(name.startswith("DASK_ADP__") for name in env)
                continue
            wanted = {**SECRET_ENV, **(SERVICE_SECRET_ENV if role == "service" else {})}
            for name, key in wanted.items():
                assert env[name] == {"secretKeyRef": {"name": "adp", "key": key}}, (role, name)
            # what the pod's dask config becomes once Kubernetes resolves the Secret
            resolved = {
                e["name"]: fake[e["valueFrom"]["secretKeyRef"]["key"]]
                if "valueFrom" in e
                else e["value"]
                for e in container["env"]
                if e["name"].startswith("DASK_ADP__")
            }
            config = dask.config.collect_env(resolved)["adp"]
            adp = Settings.model_validate(config)
            assert adp.audit.url == fake["audit-url"] and adp.models.url == fake["models-url"]
            assert adp.models.store == fake["models-store"]
            keys = [adp.audit.signing_key, adp.audit.public_key]
            if role == "service":
                assert adp.service.database == fake["database-url"]
                keys.append(adp.service.auth.secret_file)
            # every key file is one the init container copies in from the Secret
            (copier,) = pod["initContainers"]
            secret = next(v["secret"] for v in pod["volumes"] if "secret" in v)
            for key in keys:
                assert key is not None and key.parent == Path(SECRETS_DIR)
                assert any(a.endswith(f"/{key.name}") for a in copier["args"])
                assert {"key": key.name, "path": key.name} in secret["items"]
            assert not any(
                "://" in str(e.get("value", ""))
                for e in container["env"]
                if e["name"].startswith("DASK_ADP__")
            )
            checked.add(role)
    assert checked == {"scheduler", "job", "service"}


def test_the_init_containers_copy_makes_secrets_adp_accepts(
    default: list[dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Secret volume under fsGroup is group-readable (0440): ADP refuses such a token
    secret. The init container's command, run here, makes copies it accepts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from adp.observe.signing import load_signer
    from adp.service.keys import load_or_create_secret

    if shutil.which("install") is None:  # pragma: no cover - coreutils
        pytest.skip("no install(1)")
    deployment = _kind(default, "Deployment")[0]["spec"]["template"]["spec"]
    (copier,) = deployment["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in copier["volumeMounts"]}
    source, target = tmp_path / "secret", tmp_path / "secrets"
    source.mkdir()
    target.mkdir()
    key = Ed25519PrivateKey.generate()
    files = {
        "audit.ed25519": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "audit.ed25519.pub": key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "service.secret": os.urandom(64),
    }
    secret = next(v["secret"] for v in deployment["volumes"] if v["name"] == "adp-secret")
    for item in secret["items"]:
        (source / item["path"]).write_bytes(files[item["key"]])
        (source / item["path"]).chmod(secret["defaultMode"])
    with pytest.raises(ConfigError, match="open to group"):
        load_or_create_secret(source / "service.secret")
    args = [
        a.replace(mounts["adp-secret"], str(source)).replace(mounts["adp-secrets"], str(target))
        for a in copier["args"]
    ]
    subprocess.run(args, check=True, timeout=30)
    for name in files:
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600
    assert load_or_create_secret(target / "service.secret") == files["service.secret"]
    with caplog.at_level(logging.WARNING, logger="adp.observe.signing"):
        signer = load_signer(tmp_path, target / "audit.ed25519", create=False)
    assert signer is not None and caplog.records == []


# -- settings and job files ----------------------------------------------------------------
def test_settings_keep_defaults_and_name_the_key_at_fault(tmp_path: Path) -> None:
    partial = kubernetes_settings({"worker": {"replicas": 7}})
    assert partial.worker.replicas == 7
    assert partial.worker.resources.limits == {"cpu": "1", "memory": "4Gi"}
    # keys as DASK_ADP__KUBERNETES__* variables spell them; names in env stay as given
    spelled = kubernetes_settings({"image_pull_policy": "Always", "env": {"A_B": "1"}})
    assert spelled.image_pull_policy == "Always" and spelled.env == {"A_B": "1"}
    with dask.config.set({"adp.kubernetes.namespace": "ns", "adp.kubernetes.adapt": None}):
        objects = render()
    assert {o["metadata"]["namespace"] for o in objects} == {"ns"}
    assert _kind(objects, "DaskAutoscaler") == []
    bad = {
        "image": ("adp.kubernetes.image", "adp:1.0", "names no registry"),
        "worker": ("adp.kubernetes.worker.replicas", {"replicas": -1}, "greater than or equal"),
        "scheduler": (
            "adp.kubernetes.scheduler.resources.limits.memory",
            {"resources": {"limits": {"memory": None}}},
            "valid string",
        ),
        "name": ("adp.kubernetes.name", "ADP_prod", "not a Kubernetes name"),
        "colour": ("adp.kubernetes.colour", "blue", "Extra inputs"),
    }
    for key, (where, value, why) in bad.items():
        with pytest.raises(ConfigError, match=re.escape(where) + ".*" + why):
            kubernetes_settings({key: value})
    with pytest.raises(ValueError, match="needs requests.memory, limits.memory"):
        Resources.model_validate({"requests": {"cpu": 1}, "limits": {"cpu": 1}})
    # a job file must name a DaskJob and leave the scheduler to it
    for name, text, why in [
        ("Nightly_Job.yaml", "name: x\n", "not a Kubernetes name"),
        ("pinned.yaml", "cluster: {address: 'tcp://elsewhere:8786'}\n", "cluster.address"),
        ("list.yaml", "- a\n", "not a YAML mapping"),
        ("shape.yaml", "cluster: {n_workers: two}\n", "cluster.n_workers"),
        ("bounds.yaml", "cluster: {adapt: {minimum: 5, maximum: 2}}\n", "cluster.adapt"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=re.escape(why)):
            read_job(tmp_path / name)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "s3-lake.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="s3-lake"):
        render(jobs=[EXAMPLES / "s3-lake.yaml", tmp_path / "other" / "s3-lake.yaml"])


def test_the_command_streams_yaml_or_writes_a_kustomize_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["manifests", "--job", str(EXAMPLES / "s3-lake.yaml"), "--alerts", str(ALERTS)]
    streamed = runner.invoke(cluster, args)
    assert streamed.exit_code == 0, streamed.output
    documents = list(yaml.safe_load_all(streamed.stdout))
    assert documents == render(jobs=[EXAMPLES / "s3-lake.yaml"], alerts=read_alerts(ALERTS))
    out = tmp_path / "deploy"
    (out / "jobs").mkdir(parents=True)
    (out / "daskjob-gone.yaml").write_text(f"# {HEADER}\nkind: DaskJob\n")
    (out / "jobs" / "daskjob-gone.yaml").write_text(f"# {HEADER}\nkind: DaskJob\n")
    (out / "mine.yaml").write_text("kind: Secret\n")
    written = runner.invoke(cluster, [*args, "--output", str(out)])
    assert written.exit_code == 0, written.output
    assert not (out / "daskjob-gone.yaml").exists()
    assert not (out / "jobs" / "daskjob-gone.yaml").exists()
    assert (out / "mine.yaml").exists()
    assert sorted(p.name for p in (out / "jobs").iterdir()) == [
        "configmap-s3-lake-spec.yaml",
        "daskjob-s3-lake.yaml",
        "kustomization.yaml",
    ]
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in out.glob("*.yaml") if p.name not in {"kustomization.yaml", "mine.yaml"}
    )
    missing = runner.invoke(cluster, ["manifests", "--job", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert "nope.yaml" in missing.output and len(missing.output.strip().splitlines()) == 1


# -- the committed files -------------------------------------------------------------------
def test_committed_manifests_equal_a_fresh_render(package_defaults: None, tmp_path: Path) -> None:
    command = _recorded_command(BASE)
    assert command[:3] == ["adp", "cluster", "manifests"] and "--output" in command
    write(_render_as_recorded(command), tmp_path, shlex.join(command))
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.yaml")}
    committed = {p.relative_to(BASE): p.read_text() for p in BASE.rglob("*.yaml")}
    assert sorted(committed) == sorted(fresh), "re-render: " + shlex.join(command)
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} differs; re-render: {shlex.join(command)}"
    # adp/adp.yaml's section (once there) is what the renderer documents as defaults
    shipped = yaml.safe_load((REPO / "adp" / "adp.yaml").read_text())["adp"]
    if "kubernetes" in shipped:
        assert shipped["kubernetes"] == DEFAULTS


def _kustomize(request: pytest.FixtureRequest, folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        need_in_ci("kubectl is not installed (it renders kustomizations)")
    done = subprocess.run(
        [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_kustomize_renders_the_base_jobs_and_overlay_offline(
    request: pytest.FixtureRequest, crd_schemas: dict
) -> None:
    base = _kustomize(request, KUBERNETES)
    kinds = sorted(o["kind"] for o in base)
    assert kinds == sorted(
        ["DaskCluster", "DaskAutoscaler", "Deployment", "Service"]
        + ["ServiceMonitor", "ServiceMonitor", "PrometheusRule"]
    )
    jobs = _kustomize(request, BASE / "jobs")
    assert sorted(o["kind"] for o in jobs) == ["ConfigMap", "DaskJob"]
    overlay = _kustomize(request, OVERLAY)
    assert sorted(o["kind"] for o in overlay) == kinds
    assert {o["metadata"]["namespace"] for o in overlay} == {"adp-production"}
    images = set()
    for obj in overlay:
        if obj["kind"] in DASK_KINDS:
            assert _crd_errors(obj, crd_schemas) == []
        if obj["kind"] in CORE_KINDS:
            assert _strict_errors(obj) is None
        for _, pod in _pods(obj):
            images |= {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    assert images == {"registry.example.com/adp/adp:0.1.0-production"}
    (dask_cluster,) = _kind(overlay, "DaskCluster")
    worker = dask_cluster["spec"]["worker"]
    assert worker["replicas"] == 4
    assert worker["spec"]["containers"][0]["resources"]["limits"]["memory"] == "8Gi"
    assert _kind(overlay, "DaskAutoscaler")[0]["spec"]["maximum"] == 50


# -- the image -----------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of cluster/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (CLUSTER / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _dockerfile_user() -> str:
    return [args for op, args in _dockerfile() if op == "USER"][-1].split(":")[0]


def _pip_installs(commands: str) -> list[list[str]]:
    """The argument lists of every ``pip install`` in a shell command line."""
    installs = []
    for part in re.split(r"&&|;", commands):
        words = shlex.split(part)
        if "pip" in words and "install" in words:
            installs.append(words[words.index("install") + 1 :])
    return installs


def test_the_image_installs_as_make_run_does() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", project["project"]["requires-python"])
    assert minimum is not None
    (base,) = [args for op, args in _dockerfile() if op == "FROM"]
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?(?:-slim.*)?", base)
    assert match is not None and match.group(1) == minimum.group(1) == "3.11"
    assert project["tool"]["mypy"]["python_version"] == match.group(1)
    # the Makefile's `make run` install: pip pinned first, then `pip install $(PIN) -e .`
    makefile = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*)$", makefile, re.MULTILINE))
    recipe = re.search(r"^\$\(VENV\)/\.installed-run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), recipe.group(1))
    (make_install,) = _pip_installs(expanded)
    pip_pin = re.search(r'"(pip==[^"]+)"', makefile)
    assert pip_pin is not None
    runs = [args for op, args in _dockerfile() if op == "RUN"]
    image_installs = [words for run in runs for words in _pip_installs(run)]
    assert ["--no-cache-dir", "--quiet", "--upgrade", pip_pin.group(1)] in image_installs

    def flags(words: list[str]) -> dict[str, str]:
        return {w: words[i + 1] for i, w in enumerate(words) if w in {"-c", "-e"}}

    wanted = flags(make_install)
    assert wanted == {"-c": "constraints.txt", "-e": "."}
    (image,) = [flags(w) for w in image_installs if "-e" in w]
    assert image["-c"] == wanted["-c"]
    # the same editable project; the postgres extra is the database driver pods need
    assert image["-e"] in {wanted["-e"], f"{wanted['-e']}[postgres]"}


def test_the_image_owns_its_state_directory_and_reads_the_pod_config() -> None:
    steps = _dockerfile()
    user = _dockerfile_user()
    pods = yaml.safe_load((CLUSTER / "dask.yaml").read_text())
    state_dir = pods["adp"]["state-dir"]
    runs = " ".join(args for op, args in steps if op == "RUN")
    owned = re.search(rf"install -d -o {user} -g {user} -m 0750 {re.escape(state_dir)}", runs)
    assert owned is not None, f"the image must create {state_dir} owned by user {user}"
    assert f"--uid {user}" in runs
    copies = {args.split()[-1]: args.split()[0] for op, args in steps if op == "COPY"}
    env = " ".join(args for op, args in steps if op == "ENV")
    config_dir = re.search(r"DASK_CONFIG=(\S+)", env)
    assert config_dir is not None
    assert copies[f"{config_dir.group(1)}/dask.yaml"] == "cluster/dask.yaml"


def _docker_glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match, with ``**``)."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(out)


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path, or a folder above it, decides
    (a ``!`` pattern brings it back)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        glob = _docker_glob(pattern.removeprefix("!"))
        if any(glob.fullmatch(c) for c in candidates):
            ignored = not pattern.startswith("!")
    return ignored


def test_the_build_context_leaves_out_everything_the_image_does_not_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [source for op, args in _dockerfile() if op == "COPY" for source in args.split()[:-1]]
    assert sources
    for source in sources:
        inside = source if "." in Path(source).name else f"{source}/__init__.py"
        assert not _docker_ignored(inside, patterns), source
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "data/demo-lake/part.0.parquet",
        "out/example-score/part.0.parquet",
        "scores.parquet",
        "adp/__pycache__/config.cpython-311.pyc",
        "adp.egg-info/PKG-INFO",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/adp",
        ".adp/audit.db",
        "tests/conftest.py",
    ]:
        assert _docker_ignored(path, patterns), path
