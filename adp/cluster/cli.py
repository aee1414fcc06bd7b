"""``adp cluster``: deployment commands. ``adp cluster manifests`` renders ADP's Kubernetes
objects (:func:`adp.cluster.manifests.render`) to standard output or to a folder that
``kubectl apply -k`` (or a kustomize overlay) takes."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from adp.clitools import fail_cleanly

__all__ = ["HEADER", "cluster", "manifests", "write"]

#: The first line of every file :func:`write` makes (and the mark of files it may replace).
HEADER = "Rendered by `adp cluster manifests` from ADP's configuration: do not edit, re-render."
#: Where the alert rules are, from the top of a checkout.
ALERTS = Path("cluster") / "monitoring" / "alerts.yaml"


def file_name(obj: Mapping[str, Any]) -> str:
    """The file :func:`write` puts ``obj`` in: ``<kind>-<name>.yaml``, lower case."""
    return f"{str(obj['kind']).lower()}-{obj['metadata']['name']}.yaml"


def write(
    objects: Iterable[Mapping[str, Any]], directory: str | Path, command: str | None = None
) -> list[Path]:
    """Write one file per object to ``directory``, the objects of DaskJobs (labelled
    ``app.kubernetes.io/component: job``) to its ``jobs/`` folder, each folder with a
    ``kustomization.yaml`` listing its files.

    ``kubectl apply -k DIR`` then deploys the shared cluster, the service and monitoring,
    and ``kubectl apply -k DIR/jobs`` runs the jobs. Files an earlier render wrote (they
    start with :data:`HEADER`) that this one does not are removed, so each folder holds
    exactly this render; other files are left alone.

    Parameters
    ----------
    objects : iterable of mapping
        Kubernetes objects (:func:`adp.cluster.manifests.render`).
    directory : str or Path
        Created when missing.
    command : str, optional
        The command line that rendered ``objects``, recorded under the header.

    Returns
    -------
    list of Path
        The files written, each folder's ``kustomization.yaml`` after its objects.

    Raises
    ------
    adp.errors.ConfigError
        When two objects would share a file.
    """
    from adp.cluster.kube_settings import COMPONENT
    from adp.cluster.manifests import dump
    from adp.errors import ConfigError

    directory = Path(directory)
    header = HEADER if command is None else f"{HEADER}\n{command}"
    folders: dict[Path, dict[str, str]] = {directory: {}, directory / "jobs": {}}
    for obj in objects:
        is_job = obj["metadata"].get("labels", {}).get(COMPONENT) == "job"
        texts = folders[directory / "jobs" if is_job else directory]
        name = file_name(obj)
        if name in texts:
            raise ConfigError(f"two objects would be written to {name}")
        texts[name] = dump([obj], header)
    written = []
    for folder, texts in folders.items():
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(texts),
        }
        texts["kustomization.yaml"] = dump([kustomization], header)
        folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(folder.glob("*.yaml")):
            if old.name not in texts and old.read_text(encoding="utf-8").startswith(f"# {HEADER}"):
                old.unlink()
        for name, text in texts.items():
            path = folder / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


@click.group("cluster")
def cluster() -> None:
    """Deploy ADP on a cluster: Kubernetes manifests rendered from ADP's configuration."""


@cluster.command("manifests")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object and a kustomization.yaml here (default: a YAML stream "
    "on standard output).",
)
@click.option(
    "--job",
    "jobs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A job spec file to run as a DaskJob named after the file (repeatable).",
)
@click.option(
    "--alerts",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Prometheus alert rules (default: {ALERTS} when it exists).",
)
@fail_cleanly
def manifests(output: Path | None, jobs: tuple[Path, ...], alerts: Path | None) -> None:
    """Render the DaskCluster, DaskAutoscaler, a DaskJob per --job, the ADP service, and
    its monitoring from the adp.kubernetes config section."""
    from adp.cluster.kube_settings import read_alerts
    from adp.cluster.manifests import dump, render

    if alerts is None and ALERTS.is_file():
        alerts = ALERTS
    if alerts is None:
        click.echo(f"no PrometheusRule: {ALERTS} is not here; give --alerts FILE", err=True)
    rules = read_alerts(alerts) if alerts is not None else []
    objects = render(jobs=jobs, alerts=rules)
    if output is None:
        click.echo(dump(objects, HEADER), nl=False)
        return
    command = ["adp", "cluster", "manifests", "--output", str(output)]
    command += [arg for job in jobs for arg in ("--job", str(job))]
    command += ["--alerts", str(alerts)] if alerts is not None else []
    for path in write(objects, output, shlex.join(command)):
        click.echo(str(path))
