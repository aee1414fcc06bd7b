"""Running a job spec end to end on a Dask cluster.

Stages (tasks on the workers, one per partition unless said otherwise):

1. **score**: read the source, score every partition with the fitted detector, and stage
   the raw scores (key columns, ``score``) as Parquet beside the output location;
2. **threshold**: the global threshold from the staged score column (exact, bounded): one
   task per group of staged files (about :data:`THRESHOLD_ROWS` scores), each pass of the
   rule reading its group again, so worker memory does not grow with the rows;
3. **flag**: flag (and explain) each staged partition, count precision and recall when a
   truth column is named, and write the final partition;
4. **commit**: write the manifest and move the staged dataset into place.

A failure at any stage leaves the output location as it was.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed
from distributed import Client
from rich.console import Console

from adp.cluster import cluster_for
from adp.config import settings
from adp.detect.detector import Detector, create_detector
from adp.detect.features import resolve_features
from adp.detect.threshold import Threshold, flag, from_spec
from adp.errors import OutputExistsError
from adp.io.profile import DataProfile, profile
from adp.io.read import read
from adp.io.sinks import (
    Staging,
    WrittenPart,
    check_target,
    make_folder,
    manifest_for,
    write_part,
    write_partitions,
)
from adp.io.sql_write import write_table
from adp.io.validate import apply_missing_policy
from adp.jobs.evaluation import Evaluation, evaluate_partition
from adp.jobs.progress import compute_with_progress
from adp.jobs.spec import JobSpec, OutputSpec
from adp.observe.audit import AuditLog, audited
from adp.observe.events import report_client


@dataclass
class JobResult:
    """What a finished job did; printed as the summary and rendered in the report."""

    name: str
    output_uri: str
    rows: int
    partitions: int
    workers: int
    anomalies: int
    threshold: float
    detector: str
    features: list[str]
    fit_rows: int
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    profile: DataProfile | None = None
    report_path: str | None = None

    @property
    def anomaly_share(self) -> float:
        return self.anomalies / self.rows if self.rows else 0.0


def _client_for(spec: JobSpec, scheduler: str | None, client: Client | None) -> Any:
    return cluster_for(
        scheduler or spec.cluster.address,
        client=client,
        n_workers=spec.cluster.n_workers,
        threads_per_worker=spec.cluster.threads_per_worker,
        memory_limit=spec.cluster.memory_limit,
    )


def _pin_partitions(ddf: dd.DataFrame) -> dd.DataFrame:
    """Fix the partitioning of ``ddf`` once for every stage of the job.

    dask fuses Parquet partitions according to the columns a later step reads, so two
    projections of one frame can have different partitions. Built from the frame's own
    tasks, the pinned frame has one partitioning that every stage (sample, score, explain)
    shares, and the staged scores align with the source partition by partition.
    """
    divisions = ddf.divisions if ddf.known_divisions else None
    return dd.from_delayed(ddf.to_delayed(), meta=ddf._meta, divisions=divisions, verify_meta=False)


def _check_table_target(url: str, table: str, mode: str) -> None:
    """Refuse, before any work, to write into an existing table unless told how."""
    import sqlalchemy as sa

    from adp.db import check_identifier, engine_for

    check_identifier(table)
    engine = engine_for(url)
    try:
        exists = sa.inspect(engine).has_table(table)
    finally:
        engine.dispose()
    if exists and mode == "error":
        raise OutputExistsError(
            f"table {table!r} already exists at the output database; set output.mode to "
            "'upsert' (merge on the key) or 'overwrite' (replace it)"
        )


def _build_detector(spec: JobSpec) -> Detector:
    assert spec.detector is not None
    if spec.detector.model is not None:
        from adp.models import load_detector

        detector: Detector = load_detector(spec.detector.model)
        return detector
    assert spec.detector.name is not None
    return create_detector(spec.detector.name, **spec.detector.params)


def _threshold_rule(spec: JobSpec, detector: Detector) -> Threshold:
    t = spec.threshold
    if t.score is not None:
        return from_spec(score=t.score)
    if t.contamination is not None:
        return from_spec(contamination=t.contamination)
    return detector.threshold_rule(None)


#: Rows of staged scores per task of the threshold passes (8 bytes each).
THRESHOLD_ROWS = 1_000_000


def _read_staged(path: str, storage_options: dict[str, Any] | None) -> pd.DataFrame:
    return pd.read_parquet(path, storage_options=storage_options)


def _read_staged_scores(paths: list[str], storage_options: dict[str, Any] | None) -> pd.Series:
    """The score column of some staged files, end to end (the threshold needs no index)."""
    values = []
    for path in paths:
        frame = pd.read_parquet(path, columns=["score"], storage_options=storage_options)
        values.append(frame["score"].to_numpy(dtype=np.float64))
    return pd.Series(np.concatenate(values) if values else np.empty(0), name="score")


def _group_parts(parts: list[WrittenPart], rows: int) -> list[list[str]]:
    """Consecutive staged files in groups of about ``rows`` rows (at least one file each).

    The threshold's graph and its scheduling grow with the number of its partitions; a
    score is 8 bytes against a whole row of features, so many staged files make one
    threshold partition.
    """
    groups: list[list[str]] = []
    size = rows
    for part in parts:
        if size >= rows:
            groups.append([])
            size = 0
        groups[-1].append(part.path)
        size += part.rows
    return groups


def _resolve_threshold(
    rule: Threshold,
    scores: dd.Series,
    client: Client,
    annotate: Callable[[], Any] = contextlib.nullcontext,
) -> float:
    """The global threshold of ``rule`` over ``scores``, one pass at a time.

    Each pass's small result (count and range, histogram, ...) is computed before the next
    pass is built, so every pass reads the staged scores again. In one graph the passes
    would share the score partitions, and dask would keep every one of them in worker
    memory until the last pass: memory would grow with the rows. ``annotate`` returns the
    context manager each pass's graph is submitted in.
    """

    def step(value: Delayed) -> Any:
        with annotate():
            return client.compute(value).result()

    return float(step(rule.resolve(scores, step=step)))


def _finish_partition(
    part: pd.DataFrame,
    path: str,
    drop: list[str],
    label: str | None,
    kind: str | None,
    storage_options: dict[str, Any] | None,
) -> tuple[WrittenPart, Evaluation | None]:
    evaluation = evaluate_partition(part, label, kind) if label else None
    written = write_part(part.drop(columns=drop), path, storage_options)
    return written, evaluation


def run_job(
    spec: JobSpec,
    *,
    scheduler: str | None = None,
    client: Client | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    audit_log: AuditLog | None = None,
    origin: str = "api",
) -> JobResult:
    """Run a job spec: fit, score every partition, threshold globally, write atomically.

    Parameters
    ----------
    spec : JobSpec
        The validated job.
    scheduler : str, optional
        A scheduler address; overrides ``cluster.address`` in the spec.
    client : distributed.Client, optional
        Use this client (and its cluster) instead of connecting.
    show_progress : bool
        Show a progress bar per stage.
    console : rich.console.Console, optional
        Where progress goes.
    audit_log : AuditLog, optional
        Where the job's audit records go; default the configured ``adp.audit.url``.
    origin : str
        Who started the job, for the audit trail (``"cli"`` or ``"api"``).

    Returns
    -------
    JobResult

    Raises
    ------
    adp.errors.OutputExistsError
        Before any work, when the output holds data and ``output.mode`` does not allow
        replacing or merging.
    adp.errors.AuditError
        When the job's audit records cannot be written: the job does not run (fail closed).
    """
    assert spec.output is not None, "run_job needs an output section"
    output: OutputSpec = spec.output
    if output.table is not None:
        _check_table_target(output.uri, output.table, output.mode)
    else:
        check_target(output.uri, output.mode, output.storage_options)  # type: ignore[arg-type]
    log = audit_log or AuditLog()
    job_id = uuid.uuid4().hex
    audit = _JobAudit(log, job_id, origin)
    log.append(
        "job.submit",
        action="submit",
        resource=spec.source.uri,
        job_id=job_id,
        details={"name": spec.name, "output": output.uri},
        source=origin,
    )
    with _client_for(spec, scheduler, client) as c:
        report_client(c, jobs_started=1)
        try:
            with audited(
                log,
                "job.run",
                action="run",
                resource=spec.source.uri,
                job_id=job_id,
                details={"name": spec.name},
                source=origin,
                client=c,
            ):
                result = _execute(spec, c, audit, show_progress=show_progress, console=console)
        except BaseException:
            report_client(c, jobs_failed=1)
            raise
        report_client(
            c,
            jobs_finished=1,
            rows_read=result.rows,
            fit_seconds=result.stage_seconds.get("fit", 0.0),
            anomalies_flagged=result.anomalies,
        )
    return result


@dataclass(frozen=True)
class _JobAudit:
    """The audit trail of one job: its log, id and origin."""

    log: AuditLog
    job_id: str
    origin: str

    def annotate(self) -> Any:
        """Annotate the graphs submitted inside with the job id (the scheduler audits it)."""
        return dask.annotate(adp_job_id=self.job_id)

    def record(self, event_type: str, action: str, resource: str, **details: Any) -> None:
        self.log.append(
            event_type,
            action=action,
            resource=resource,
            job_id=self.job_id,
            details=details,
            source=self.origin,
        )


def _execute(
    spec: JobSpec,
    c: Client,
    audit: _JobAudit,
    *,
    show_progress: bool,
    console: Console | None,
) -> JobResult:
    assert spec.output is not None
    output: OutputSpec = spec.output
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    source = spec.source
    workers = len(c.scheduler_info(n_workers=-1)["workers"])
    ddf = read(
        source.uri,
        format=source.format,
        columns=source.columns,
        storage_options=source.storage_options,
        **source.options,
    )
    eval_columns = (
        [col for col in (spec.evaluate.label, spec.evaluate.kind) if col] if spec.evaluate else []
    )
    features = resolve_features(
        ddf, source.features, exclude=[*source.exclude, *eval_columns], key=source.key
    )
    carry = [*source.key, *[col for col in eval_columns if col not in source.key]]
    ddf = _pin_partitions(ddf[list(dict.fromkeys([*features, *carry]))])
    data_profile = None
    if spec.profile:
        t0 = time.perf_counter()
        data_profile = profile(ddf, source=source.uri, storage_options=source.storage_options)
        stage_seconds["profile"] = time.perf_counter() - t0
    ddf, _medians = apply_missing_policy(ddf, features, source.missing)

    t0 = time.perf_counter()
    detector = _build_detector(spec)
    if not detector.is_fitted:
        detector.fit(
            ddf,
            features,
            sample_rows=spec.fit.sample_rows,
            random_state=spec.fit.random_state,
            key=source.key,
            strategy=spec.fit.strategy,
        )
    stage_seconds["fit"] = time.perf_counter() - t0

    raw = detector.decision_function(ddf, key=carry)
    if output.table is None:
        staging = Staging(output.uri, output.mode, output.storage_options)  # type: ignore[arg-type]
    else:  # scores are staged locally, then written to the table
        local = settings().state_dir / "staging" / f"{spec.name}-{uuid.uuid4().hex[:8]}"
        staging = Staging(str(local), "overwrite")
    with staging.session():
        t0 = time.perf_counter()
        raw_parts: list[WrittenPart] = compute_with_progress(
            c,
            write_partitions(raw, staging.path("raw"), output.storage_options),
            "score",
            console=console,
            show=show_progress,
            annotate=audit.annotate,
        )
        stage_seconds["score"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        staged = dd.from_delayed(
            [dask.delayed(_read_staged)(p.path, output.storage_options) for p in raw_parts],
            meta=raw._meta,
            verify_meta=False,
        )
        rule = _threshold_rule(spec, detector)
        scores = dd.from_delayed(
            [
                dask.delayed(_read_staged_scores)(group, output.storage_options)
                for group in _group_parts(raw_parts, THRESHOLD_ROWS)
            ],
            meta=pd.Series(np.empty(0), name="score"),
            verify_meta=False,
        )
        threshold = _resolve_threshold(rule, scores, c, audit.annotate)
        stage_seconds["threshold"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        flagged = flag(staged, threshold)
        if spec.explain is not None:
            from adp.detect.explain import explain_flagged

            flagged = explain_flagged(ddf, flagged, detector, spec.explain.top_k)
        drop = [col for col in eval_columns if col not in source.key]
        final = staging.path("final")
        label = spec.evaluate.label if spec.evaluate else None
        kind = spec.evaluate.kind if spec.evaluate else None
        tasks = [
            dask.delayed(_finish_partition)(
                part,
                f"{final}/part.{i:05d}.parquet",
                drop,
                label,
                kind,
                output.storage_options,
            )
            for i, part in enumerate(flagged.to_delayed())
        ]
        make_folder(final, output.storage_options)
        results = compute_with_progress(
            c, tasks, "flag", console=console, show=show_progress, annotate=audit.annotate
        )
        audit.record(
            "source.read",
            "read",
            source.uri,
            rows=sum(p.rows for p, _ in results),
            partitions=len(results),
        )
        stage_seconds["flag"] = time.perf_counter() - t0

        parts = [written for written, _ in results]
        evaluation = Evaluation.combine(e for _, e in results if e is not None) if label else None
        anomalies = sum(p.anomalies or 0 for p in parts)
        wall = time.perf_counter() - started
        manifest = manifest_for(
            parts,
            job=spec.name,
            detector=detector.name,
            params=detector.get_params(),
            features=detector.features_,
            threshold=threshold,
            anomalies=anomalies,
            source=source.uri,
            created=pd.Timestamp.now(tz="UTC").isoformat(),
        )
        audit.record(
            "output.write", "write", output.uri, rows=manifest["rows"], anomalies=anomalies
        )
        if output.table is None:
            staging.commit(final, manifest)
        else:
            t0 = time.perf_counter()
            staged_final = dd.read_parquet([p.path for p in parts])
            index_key = [staged_final.index.name] if staged_final.index.name else []
            write_table(
                staged_final,
                output.uri,
                output.table,
                key=source.key or index_key,
                mode=output.mode,
            )
            stage_seconds["table"] = time.perf_counter() - t0

    return JobResult(
        name=spec.name,
        output_uri=output.uri,
        rows=sum(p.rows for p in parts),
        partitions=len(parts),
        workers=workers,
        anomalies=anomalies,
        threshold=threshold,
        detector=detector.name,
        features=list(detector.features_),
        fit_rows=detector.n_samples_fit_,
        wall_seconds=wall,
        stage_seconds=stage_seconds,
        evaluation=evaluation,
        profile=data_profile,
    )
