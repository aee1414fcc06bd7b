"""Kubernetes manifests of an ADP deployment, rendered from ADP's own configuration.

:func:`render` returns the objects ``adp cluster manifests`` writes: for the
dask-kubernetes operator, the team's shared ``DaskCluster`` with its ``DaskAutoscaler``, and
a ``DaskJob`` (with a ``ConfigMap`` holding its spec) per job spec file; the ADP service's
``Deployment`` and ``Service``; for the Prometheus Operator, ``ServiceMonitor`` objects and
the ``PrometheusRule`` of ``cluster/monitoring/alerts.yaml``. They come from the
``adp.kubernetes`` section (:mod:`adp.cluster.kube_settings`), ``adp.cluster``'s
threads-per-worker and worker-environ, ``adp.service.port`` and the package's version (the
image's default tag), so manifests rendered afresh cannot drift from the package.

Every pod gets:

- ADP's image, which bakes ``cluster/dask.yaml`` in as its dask config (the API route the
  DaskAutoscaler reads, ``adp.state-dir: /var/lib/adp``);
- resources, and probes: the scheduler's and workers' ``/health``, the service's
  ``/healthz``, and for a job's runner a check that its scheduler still answers;
- the audit trail's and the model registry's databases (and the service's job state) from
  the Secret ``adp.kubernetes.secret``, never a pod's disk; the audit signing key and the
  service's token secret are files of that Secret, copied (0600, for the image's user) by
  an init container, since a Secret volume is group-readable under ``fsGroup`` and ADP
  refuses a secret others can read;
- the label ``app.kubernetes.io/part-of: <name>``, which the operator copies to the
  scheduler Services it creates (the DaskCluster's and each DaskJob's), so one
  ServiceMonitor selects every ADP scheduler.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dask.config
import yaml

from adp.cluster.kube_settings import (
    APP,
    COMPONENT,
    DASHBOARD_PORT,
    INIT_RESOURCES,
    JOBS_DIR,
    PART_OF,
    PRELOAD,
    RUNNER_LIVENESS,
    SCHEDULER_PORT,
    SECRET_ENV,
    SECRET_FILES,
    SECRET_MOUNT,
    SECRETS_DIR,
    SERVICE_SECRET_ENV,
    SERVICE_SECRET_FILES,
    USER_ID,
    WORKER_DASHBOARD_PORT,
    AdaptBounds,
    JobFile,
    KubernetesSettings,
    Resources,
    kubernetes_settings,
    read_job,
)
from adp.errors import ConfigError

__all__ = ["dump", "render"]

DASK_GROUP = "kubernetes.dask.org/v1"
MONITORING_GROUP = "monitoring.coreos.com/v1"
_NONE: Mapping[str, str] = MappingProxyType({})


class _Renderer:
    """The objects of one deployment; one method per kind of pod or object."""

    def __init__(self, k8s: KubernetesSettings) -> None:
        from importlib.metadata import version

        from adp.config import ClusterSettings, ServiceSettings

        # the sections used, each validated (not all of settings(): adp.kubernetes may be
        # set before adp.config knows it)
        local = ClusterSettings.model_validate(dask.config.get("adp.cluster", default={}))
        service = ServiceSettings.model_validate(dask.config.get("adp.service", default={}))
        self.k8s = k8s
        self.image = k8s.image_ref(version("adp"))
        self.threads = local.threads_per_worker
        self.worker_environ = {**local.worker_environ, **k8s.worker.env}
        self.service_port = service.port

    # -- metadata ------------------------------------------------------------------------
    def labels(self, component: str | None = None) -> dict[str, str]:
        out = {APP: "adp", PART_OF: self.k8s.name, **self.k8s.labels}
        return {**out, COMPONENT: component} if component else out

    def meta(self, name: str, component: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": self.labels(component)}
        if self.k8s.namespace:
            meta["namespace"] = self.k8s.namespace
        return meta

    # -- containers and pods -------------------------------------------------------------
    def container(
        self,
        name: str,
        args: list[str],
        resources: Resources,
        *,
        secrets: Mapping[str, str] = _NONE,
        files: Mapping[str, str] = _NONE,
        plain: Mapping[str, str] = _NONE,
        environment: bool = True,
        **more: Any,
    ) -> dict[str, Any]:
        """A container of ADP's image. With ``environment``: variables from ``secrets``
        (variable -> key of the Secret), pointing at copied Secret ``files`` (file -> the
        variable), ``plain`` values over ``adp.kubernetes.env``, and ``env-from``."""
        env: list[dict[str, Any]] = [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": self.k8s.secret, "key": key}}}
            for var, key in secrets.items()
        ]
        env += [{"name": var, "value": f"{SECRETS_DIR}/{f}"} for f, var in files.items()]
        env += [{"name": k, "value": v} for k, v in {**self.k8s.env, **plain}.items()]
        env_from = [{"secretRef": {"name": s}} for s in self.k8s.env_from]
        return {
            "name": name,
            "image": self.image,
            "imagePullPolicy": self.k8s.image_pull_policy,
            "args": args,
            **({"env": env} if env and environment else {}),
            **({"envFrom": env_from} if env_from and environment else {}),
            **more,
            "resources": resources.model_dump(),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }

    def pod(
        self,
        containers: list[dict[str, Any]],
        files: Mapping[str, str] | None = None,
        volumes: list[dict[str, Any]] | None = None,
        **more: Any,
    ) -> dict[str, Any]:
        """A pod spec: non-root, no API token, no service links; the Secret's ``files``
        copied (0600, for the image's user) to :data:`SECRETS_DIR` by an init container."""
        spec: dict[str, Any] = {
            **more,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": USER_ID,
                "runAsGroup": USER_ID,
                "fsGroup": USER_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
        volumes = list(volumes or [])
        if files:
            spec["initContainers"] = [
                self.container(
                    "secrets",
                    ["install", "-m", "0600", "-t", SECRETS_DIR]
                    + [f"{SECRET_MOUNT}/{f}" for f in files],
                    INIT_RESOURCES,
                    environment=False,
                    volumeMounts=[
                        {"name": "adp-secret", "mountPath": SECRET_MOUNT, "readOnly": True},
                        {"name": "adp-secrets", "mountPath": SECRETS_DIR},
                    ],
                )
            ]
            for c in containers:
                c.setdefault("volumeMounts", []).append(
                    {"name": "adp-secrets", "mountPath": SECRETS_DIR, "readOnly": True}
                )
            secret = {
                "secretName": self.k8s.secret,
                "defaultMode": 0o440,
                "items": [{"key": f, "path": f} for f in files],
            }
            volumes += [
                {"name": "adp-secret", "secret": secret},
                {"name": "adp-secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            ]
        spec["containers"] = containers
        if volumes:
            spec["volumes"] = volumes
        return spec

    def scheduler(self, cluster: str) -> dict[str, Any]:
        """A DaskCluster's ``scheduler``: the pod (ADP's preload) and its Service."""
        ports = [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ]
        container = self.container(
            "scheduler",
            ["dask", "scheduler", "--preload", PRELOAD],
            self.k8s.scheduler.resources,
            secrets=SECRET_ENV,
            files=SECRET_FILES,
            ports=ports,
            **_http_probes("/health", "http-dashboard"),
        )
        service_ports = [
            {
                "name": p["name"],
                "protocol": "TCP",
                "port": p["containerPort"],
                "targetPort": p["name"],
            }
            for p in ports
        ]
        return {
            "metadata": {"labels": self.labels("scheduler")},
            "spec": self.pod([container], SECRET_FILES),
            "service": {
                "type": "ClusterIP",
                "selector": {"dask.org/cluster-name": cluster, "dask.org/component": "scheduler"},
                "ports": service_ports,
            },
        }

    def worker(self, replicas: int, threads: int) -> dict[str, Any]:
        """A DaskCluster's ``worker``: its pod and replicas."""
        args = ["dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", str(threads)]
        container = self.container(
            "worker",
            [*args, "--dashboard-address", str(WORKER_DASHBOARD_PORT)],
            self.k8s.worker.resources,
            plain=self.worker_environ,
            ports=[
                {
                    "name": "http-dashboard",
                    "containerPort": WORKER_DASHBOARD_PORT,
                    "protocol": "TCP",
                }
            ],
            **_http_probes("/health", "http-dashboard"),
        )
        return {
            "replicas": replicas,
            "metadata": {"labels": self.labels("worker")},
            "spec": self.pod([container]),
        }

    # -- objects -------------------------------------------------------------------------
    def cluster(self) -> list[dict[str, Any]]:
        name = self.k8s.name
        objects = [
            {
                "apiVersion": DASK_GROUP,
                "kind": "DaskCluster",
                "metadata": self.meta(name),
                "spec": {
                    "scheduler": self.scheduler(name),
                    "worker": self.worker(self.k8s.worker.replicas, self.threads),
                },
            }
        ]
        if self.k8s.adapt is not None:
            objects.append(self.autoscaler(name, self.k8s.adapt))
        return objects

    def autoscaler(
        self, cluster: str, bounds: AdaptBounds, component: str | None = None
    ) -> dict[str, Any]:
        return {
            "apiVersion": DASK_GROUP,
            "kind": "DaskAutoscaler",
            "metadata": self.meta(cluster, component),
            "spec": {"cluster": cluster, "minimum": bounds.minimum, "maximum": bounds.maximum},
        }

    def job(self, job: JobFile) -> list[dict[str, Any]]:
        """A job spec's ConfigMap and DaskJob (and DaskAutoscaler, with ``cluster.adapt``)."""
        adapt = job.adapt
        workers = job.n_workers or (adapt.minimum if adapt else 0) or self.k8s.job.workers
        threads = job.threads_per_worker or self.threads
        spec_file = f"{job.name}.yaml"
        args = ["adp", "search" if job.search else "run", f"{JOBS_DIR}/{spec_file}"]
        runner = self.container(
            "job",
            args if job.search else [*args, "--no-progress"],
            self.k8s.job.resources,
            secrets=SECRET_ENV,
            files=SECRET_FILES,
            volumeMounts=[{"name": "job-spec", "mountPath": JOBS_DIR, "readOnly": True}],
            livenessProbe=RUNNER_LIVENESS,
        )
        config_map = {"name": f"{job.name}-spec", "items": [{"key": spec_file, "path": spec_file}]}
        pod = self.pod(
            [runner],
            SECRET_FILES,
            [{"name": "job-spec", "configMap": config_map}],
            restartPolicy="Never",
        )
        objects = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": self.meta(f"{job.name}-spec", "job"),
                "data": {spec_file: job.text},
            },
            {
                "apiVersion": DASK_GROUP,
                "kind": "DaskJob",
                "metadata": self.meta(job.name, "job"),
                "spec": {
                    "job": {"metadata": {"labels": self.labels("job")}, "spec": pod},
                    "cluster": {
                        "metadata": {"labels": self.labels()},
                        "spec": {
                            "scheduler": self.scheduler(job.name),
                            "worker": self.worker(workers, threads),
                        },
                    },
                },
            },
        ]
        if adapt is not None:  # adopted by the job's cluster once it exists, deleted with it
            objects.append(self.autoscaler(job.name, adapt, "job"))
        return objects

    def service(self) -> list[dict[str, Any]]:
        """The ADP service (``adp serve`` on the DaskCluster): Deployment and Service."""
        name = f"{self.k8s.name}-service"
        scheduler = f"tcp://{self.k8s.name}-scheduler:{SCHEDULER_PORT}"
        files = {**SECRET_FILES, **SERVICE_SECRET_FILES}
        container = self.container(
            "service",
            ["adp", "serve", "--host", "0.0.0.0", "--port", str(self.service_port)]  # noqa: S104
            + ["--scheduler", scheduler],
            self.k8s.service.resources,
            secrets={**SECRET_ENV, **SERVICE_SECRET_ENV},
            files=files,
            ports=[{"name": "http", "containerPort": self.service_port, "protocol": "TCP"}],
            **_http_probes("/healthz", "http"),
        )
        selector = self.labels("service")
        template = {"metadata": {"labels": selector}, "spec": self.pod([container], files)}
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": self.meta(name, "service"),
                "spec": {
                    "replicas": 1,  # one driver owns the job queue
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": selector},
                    "template": template,
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.meta(name, "service"),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector,
                    "ports": [{"name": "http", "port": self.service_port, "targetPort": "http"}],
                },
            },
        ]

    def monitoring(self, alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """ServiceMonitors of every ADP scheduler and of the service; the alert rules.

        Every scheduler's targets carry ``job="<name>"`` (``jobLabel``: the Services'
        part-of label), whichever cluster or DaskJob it serves; the service's carry
        ``job="<name>-service"``, its Service's name.
        """
        endpoint = {"path": "/metrics", "interval": self.k8s.monitoring.interval}
        schedulers = {
            "jobLabel": PART_OF,
            "selector": {
                "matchLabels": {PART_OF: self.k8s.name, "dask.org/component": "scheduler"}
            },
            "endpoints": [{"port": "http-dashboard", **endpoint}],
        }
        service = {
            "selector": {"matchLabels": {PART_OF: self.k8s.name, COMPONENT: "service"}},
            "endpoints": [{"port": "http", **endpoint}],
        }
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": MONITORING_GROUP,
                "kind": "ServiceMonitor",
                "metadata": self.meta(f"{self.k8s.name}-{what}", "monitoring"),
                "spec": spec,
            }
            for what, spec in (("schedulers", schedulers), ("service", service))
        ]
        for given in alerts:
            rule = copy.deepcopy(dict(given))
            meta = rule.setdefault("metadata", {})
            meta["labels"] = {**meta.get("labels", {}), **self.labels("monitoring")}
            if self.k8s.namespace:
                meta["namespace"] = self.k8s.namespace
            objects.append(rule)
        return objects


def _http_probes(path: str, port: str) -> dict[str, Any]:
    get = {"httpGet": {"path": path, "port": port}, "timeoutSeconds": 5}
    return {
        "readinessProbe": {**get, "initialDelaySeconds": 5, "periodSeconds": 10},
        "livenessProbe": {
            **get,
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "failureThreshold": 6,
        },
    }


def render(
    settings: KubernetesSettings | None = None,
    jobs: Iterable[JobFile | str | Path] = (),
    alerts: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The Kubernetes objects of an ADP deployment.

    Parameters
    ----------
    settings : KubernetesSettings, optional
        Default: :func:`kubernetes_settings` (the ``adp.kubernetes`` config section).
    jobs : iterable of JobFile or path
        Job spec files: one DaskJob each (named after the file), with a ConfigMap holding
        the spec at ``/jobs/<name>.yaml``, and a DaskAutoscaler when its ``cluster.adapt``
        is set.
    alerts : iterable of mapping
        PrometheusRule objects (``cluster/monitoring/alerts.yaml``), given ADP's labels.

    Returns
    -------
    list of dict
        DaskCluster, DaskAutoscaler, the service's Deployment and Service, per job a
        ConfigMap, a DaskJob (and a DaskAutoscaler), labelled
        ``app.kubernetes.io/component: job``, then ServiceMonitors and PrometheusRules.

    Raises
    ------
    adp.errors.ConfigError
        A bad ``adp.kubernetes`` key or job spec file, or two job files of one name.
    """
    r = _Renderer(settings or kubernetes_settings())
    files = [j if isinstance(j, JobFile) else read_job(j) for j in jobs]
    names = [f.name for f in files]
    twice = sorted({n for n in names if names.count(n) > 1} | ({r.k8s.name} & set(names)))
    if twice:
        raise ConfigError(f"job spec files name the same DaskJob (or the cluster): {twice}")
    objects = r.cluster() + r.service()
    for job in files:
        objects += r.job(job)
    return objects + r.monitoring(alerts)


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors, multi-line strings (a job spec) as ``|`` literals."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: Iterable[Mapping[str, Any]], header: str | None = None) -> str:
    """``objects`` as a multi-document YAML stream (keys in the order given).

    Parameters
    ----------
    header : str, optional
        A comment written first (each line prefixed with ``#``).
    """
    text = yaml.dump_all(
        [dict(o) for o in objects], Dumper=_Dumper, sort_keys=False, default_flow_style=False
    )
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text
