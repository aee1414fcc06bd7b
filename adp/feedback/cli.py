"""``adp review``: the review queue and the label store from the command line.

::

    adp review next  --model sensors@3 --output out/scores --strategy uncertain -n 20
    adp review label --model sensors@3 --key '{"sensor_id": "a7", "ts": "..."}' --label anomaly
    adp review list  --model sensors
    adp review learn --model sensors@3 --source data/lake --method semi_supervised

The analyst's identity is the operating-system user; labels are audited under it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click

from adp.clitools import fail_cleanly

_model = click.option(
    "--model", "model", required=True, metavar="NAME[@VERSION]", help="The model reviewed."
)
_json = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
_url = click.option("--url", help="Label database URL (default: adp.feedback.url).")
_scheduler = click.option(
    "--scheduler", metavar="ADDRESS", help="Compute on this Dask scheduler (default: threads here)."
)


@contextlib.contextmanager
def _compute_on(scheduler: str | None) -> Iterator[None]:
    """Use the scheduler at ``scheduler`` for the block (through :func:`adp.connect`, as
    every other command connects), or local threads."""
    if scheduler is None:
        yield
        return
    from adp.cluster import connect

    with connect(scheduler):
        yield


def _store(url: str | None) -> Any:
    from adp.feedback.labels import LabelStore

    return LabelStore(url)


@click.group("review")
def review() -> None:
    """Review scored rows: pick the next ones to label, label them, learn from the labels."""


@review.command("next")
@_model
@click.option("--output", "output", required=True, help="A job's output folder.")
@click.option(
    "--strategy",
    default="uncertain",
    show_default=True,
    type=click.Choice(["top", "uncertain", "disagreement", "diverse", "random"]),
    help="How rows are picked.",
)
@click.option("-n", "n", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--source", help="The rows' features (disagreement, diverse): default the output's.")
@click.option("--seed", default=0, show_default=True, help="Seed of random and diverse.")
@_url
@_scheduler
@_json
@fail_cleanly
def next_command(
    model: str,
    output: str,
    strategy: str,
    n: int,
    source: str | None,
    seed: int,
    url: str | None,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Print the next N rows of OUTPUT to label, with their keys, scores and explanations."""
    from adp.feedback.review import next_rows

    with _store(url) as store, _compute_on(scheduler):
        rows = next_rows(output, n, strategy, model=model, store=store, source=source, seed=seed)
    if as_json:
        for record in rows.to_dict(orient="records"):
            click.echo(json.dumps(record, default=_plain))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} rows to review ({strategy})")
    for column in ("key", "score", "flagged", "top features", strategy):
        table.add_column(column, overflow="fold")
    for record in rows.to_dict(orient="records"):
        features = record.get("top_features")
        table.add_row(
            record["row_key"],
            f"{record['score']:.4g}",
            "yes" if record.get("is_anomaly") else "no",
            ", ".join(map(str, features)) if _has(features) else "-",
            f"{record['priority']:.4g}",
        )
    Console().print(table)
    click.echo(
        f"label one: adp review label --model {model} --key 'KEY' --label anomaly|normal|unsure"
    )


def _has(value: Any) -> bool:
    return (
        value is not None and not (isinstance(value, float) and value != value) and len(value) > 0
    )


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


@review.command("label")
@_model
@click.option("--key", "key", required=True, help="The row's key as JSON, e.g. '{\"id\": 17}'.")
@click.option("--label", "label", required=True, type=click.Choice(["anomaly", "normal", "unsure"]))
@click.option("--note", help="Why (kept with the label, not in the audit trail).")
@_url
@fail_cleanly
def label_command(model: str, key: str, label: str, note: str | None, url: str | None) -> None:
    """Label one row of MODEL's output (audited under your user name)."""
    with _store(url) as store:
        stored = store.add(model, key, label, note=note)
    shown = stored.model if stored.version is None else f"{stored.model}@{stored.version}"
    click.echo(f"labelled {stored.row_key} of {shown} as {stored.label} (by {stored.who})")


@review.command("list")
@click.option("--model", "model", metavar="NAME", help="Only this model's labels.")
@click.option("--history", is_flag=True, help="Every answer, not only the latest per row.")
@_url
@_json
@fail_cleanly
def list_command(model: str | None, history: bool, url: str | None, as_json: bool) -> None:
    """List the labels given (the latest answer for each row)."""
    from adp.models.api import parse_ref

    name = parse_ref(model)[0] if model else None
    with _store(url) as store:
        labels = store.labels(name, history=history)
    if as_json:
        for lab in labels:
            click.echo(json.dumps(lab.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(labels)} labels")
    for column in ("model", "key", "label", "by", "when", "note"):
        table.add_column(column, overflow="fold")
    for lab in labels:
        table.add_row(
            lab.model if lab.version is None else f"{lab.model}@{lab.version}",
            lab.row_key,
            lab.label,
            lab.who,
            lab.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            lab.note or "",
        )
    Console().print(table)


@review.command("learn")
@_model
@click.option("--source", required=True, help="The scored rows' source (key and features).")
@click.option(
    "--method",
    default="semi_supervised",
    show_default=True,
    type=click.Choice(["threshold", "semi_supervised", "ensemble_weights"]),
)
@click.option(
    "--target-precision", type=click.FloatRange(0, 1, min_open=True), help="For 'threshold'."
)
@click.option("--name", help="Register under this name (default: the model's, a new version).")
@_url
@_scheduler
@fail_cleanly
def learn_command(
    model: str,
    source: str,
    method: str,
    target_precision: float | None,
    name: str | None,
    url: str | None,
    scheduler: str | None,
) -> None:
    """Learn a new version of MODEL from its labels and register it, with its lineage."""
    from adp.feedback.learn import key_columns, learn
    from adp.io.read import read
    from adp.models.api import info, parse_ref

    params: dict[str, Any] = {}
    if target_precision is not None:
        if method != "threshold":
            raise click.UsageError("--target-precision applies to --method threshold")
        params["target_precision"] = target_precision
    parent = info(*parse_ref(model))
    with _store(url) as store, _compute_on(scheduler):
        labels = store.labels(parent.name)
        columns = list(dict.fromkeys([*key_columns(labels), *parent.features]))
        frame = read(source, columns=columns)
        result = learn(parent.ref, frame, method, labels=labels, name=name, **params)
    counts = result.counts
    click.echo(
        f"registered {result.version.ref} ({method}) from {parent.ref}: "
        f"{counts['anomalies']} anomalies and {counts['normals']} normal rows labelled"
        + (f", {counts['unmatched']} labels matched no row" if counts["unmatched"] else "")
        + f"; label set {result.label_sha256[:12]}"
    )


__all__ = ["review"]
