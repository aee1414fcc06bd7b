"""The ``search:`` section of a job spec: read the source, search, show, register."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pandas as pd
from distributed import Client
from rich.console import Console
from rich.table import Table

from adp.errors import SpecError
from adp.tuning.api import SearchResult, search

if TYPE_CHECKING:  # pragma: no cover
    from adp.jobs.spec import JobSpec
    from adp.models.api import ModelRegistry


def run_search_job(
    spec: JobSpec,
    client: Client | None = None,
    *,
    console: Console | None = None,
    registry: ModelRegistry | None = None,
) -> SearchResult:
    """Run a job spec's ``search:`` section and register the winner if it asks to.

    Parameters
    ----------
    spec : adp.jobs.spec.JobSpec
        A validated spec with a ``search`` section; ``source`` is opened as for a score job
        (:func:`adp.jobs.opening.open_source`: ``features``, ``exclude``, ``key`` apply),
        ``source.missing`` is applied to the trials' data and fitted into the winner
        (``missing_``, ``medians_``), and a float ``threshold.contamination`` becomes the
        detectors' contamination.
    client : distributed.Client, optional
        Where the trials run; default the current client.
    console : rich.console.Console, optional
        Where the leaderboard is printed; default standard output.
    registry : adp.models.ModelRegistry, optional
        Registry for ``search.register``; default the configured one.

    Returns
    -------
    SearchResult
        ``result.extra["registered"]`` holds the new ``name@version`` when registered.
    """
    from adp.jobs.opening import open_source
    from adp.models.fingerprint import fingerprint_source

    if spec.search is None:
        raise SpecError("the job spec has no 'search' section: add one to run a search")
    s = spec.search
    source = spec.source
    console = console or Console()
    context = spec.context.to_context() if spec.context is not None else None
    used = context.used_columns() if context is not None else []
    opened = open_source(source, extra=[s.label, *used], context=context)
    contamination = spec.threshold.contamination
    result = search(
        opened.frame,
        space=s.space,
        label=s.label,
        metric=s.metric,
        max_trials=s.max_trials,
        time_budget=s.time_budget,
        cv=s.cv,
        sample_rows=s.sample_rows,
        random_state=s.random_state,
        strategy=s.strategy,
        features=opened.features,
        contamination=contamination if isinstance(contamination, float) else 0.1,
        missing=source.missing,
        client=client,
        context=context,
    )
    print_leaderboard(result, console)
    selection = result.extra.get("selection")
    if selection is not None:
        console.print(f"selector: {selection['reason']}")
    if s.registration is not None:
        fingerprint = fingerprint_source(source.uri, opened.frame, source.storage_options)
        # The policy (and its fit-time medians) is the winner's fitted state; the metadata
        # only shows it.
        metadata: dict[str, Any] = {"job": spec.name, "missing": source.missing}
        version = result.register(
            s.registration.name,
            metadata,
            source=source.uri,
            fingerprint=fingerprint,
            registry=registry,
        )
        result.extra["registered"] = version.ref
        console.print(f"registered [bold]{version.ref}[/bold] ({version.artifact_uri})")
    return result


def _format_score(value: float, std: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.4f}" + (f" ± {std:.4f}" if math.isfinite(std) else "")


def print_leaderboard(result: SearchResult, console: Console, top: int = 20) -> None:
    """Print the leaderboard (best ``top`` rows, then every non-ok row) as a rich table."""
    board = result.leaderboard
    shown = pd.concat([board[board["status"] == "ok"].head(top), board[board["status"] != "ok"]])
    kind = "labelled" if result.supervised else "unlabelled"
    table = Table(
        title=f"{kind} search, {result.metric} ({result.engine}, "
        f"{result.sample_size} sampled rows, {result.elapsed_seconds:.1f} s)"
    )
    for column in ("#", "detector", "params", "score", "fit s", "status", "error"):
        table.add_column(column, overflow="fold")
    for position, row in enumerate(shown.itertuples(index=False), start=1):
        table.add_row(
            str(position),
            row.detector,
            json.dumps(row.params, default=str),
            _format_score(row.score, row.score_std),
            "-" if not math.isfinite(row.fit_seconds) else f"{row.fit_seconds:.2f}",
            row.status,
            _short(row.error),
        )
    console.print(table)
    if result.budget_exhausted:
        console.print("[yellow]the time budget ran out; unfinished trials were cancelled[/]")


def _short(error: Any, limit: int = 120) -> str:
    if not isinstance(error, str):
        return ""
    return error if len(error) <= limit else error[: limit - 1] + "…"


__all__ = ["print_leaderboard", "run_search_job"]
