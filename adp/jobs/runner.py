"""Running a job spec end to end on a Dask cluster.

Before connecting to any cluster, :func:`run_job` runs the pre-flight
(:mod:`adp.jobs.preflight`, what ``adp validate`` checks) and the sink's own check; a job
refused there leaves one audit record (:mod:`adp.jobs.refusal`) and starts nothing.
The job opens its source (:mod:`adp.jobs.opening`), fits the detector (or loads a
registered one) and runs the one score path of notebooks and streams,
:func:`adp.detect.detection.run_detection`, with the output's sink
(:mod:`adp.io.sinks`) as its score stage. Stages (tasks on the workers, one per partition
unless said otherwise):

1. **score**: read the source, score every partition with the fitted detector, and stage
   the raw scores (key columns, ``score``) through the sink;
2. **threshold**: the global threshold from the staged score column (exact, bounded): one
   task per group of staged files (about :data:`adp.io.parts.THRESHOLD_ROWS` scores), each
   pass of the rule computed before the next is built and reading its group again, so
   worker memory does not grow with the rows;
3. **flag**: flag (and explain, on a fresh read of the flagged rows' features) each staged
   partition, count precision and recall when a truth column is named, and write the final
   partition through the sink;
4. **commit**: the sink puts the dataset (or table) in place with its manifest.

A failure at any stage leaves the output location as it was. SIGINT, SIGTERM and SIGHUP
stop a job the same way (:mod:`adp.jobs.interrupts`): its futures are cancelled, staging
removed, the audit outcome is ``interrupted`` with the signal, and the failure is counted;
a lost scheduler is one :class:`adp.cluster.lost.SchedulerLostError` naming its address.
Jobs whose client died without an outcome are closed in the audit trail before each job.
The runner holds no file layout and no SQL: both belong to the sink.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import pandas as pd
from dask.delayed import Delayed
from distributed import Client
from rich.console import Console

from adp.cluster import cluster_for
from adp.cluster.lost import lost_scheduler_is_an_error, scheduler_lost
from adp.detect.base import BaseDetector
from adp.detect.detection import run_detection
from adp.io.profile import DataProfile
from adp.io.sinks import Sink, WrittenPart, manifest_for
from adp.jobs.building import (
    build_detector,
    job_output,
    job_sink,
    job_threshold,
    require_detector,
    staging_stamp,
)
from adp.jobs.evaluation import Evaluation, evaluate_partition
from adp.jobs.interrupts import (
    InterruptGuard,
    JobInterrupted,
    cancel_job_work,
    quiet_cancelled_gathers,
)
from adp.jobs.killed import suspects_named
from adp.jobs.opening import open_source
from adp.jobs.preflight import preflight, with_io_timeouts
from adp.jobs.profiling import JobProfile
from adp.jobs.progress import ProgressCallback, StopCheck, compute_with_progress
from adp.jobs.refusal import job_error, record_refusal
from adp.jobs.result import JobResult
from adp.jobs.resume import ModelKeeper
from adp.jobs.spec import JobSpec
from adp.models.store import serialize
from adp.observe.audit import AuditLog, audited, close_orphaned_jobs
from adp.observe.events import report_client
from adp.observe.orphans import process_owner
from adp.redact import redact_url


def _client_for(spec: JobSpec, scheduler: str | None, client: Client | None) -> Any:
    return cluster_for(
        scheduler or spec.cluster.address,
        client=client,
        n_workers=spec.cluster.n_workers,
        threads_per_worker=spec.cluster.threads_per_worker,
        memory_limit=spec.cluster.memory_limit,
        adapt=spec.cluster.adapt.model_dump() if spec.cluster.adapt else None,
        # secrets stay SecretStr in a Python-mode dump; only what the spec set is passed
        gateway=spec.cluster.gateway.model_dump(exclude_unset=True)
        if spec.cluster.gateway
        else None,
    )


def run_job(
    spec: JobSpec,
    *,
    scheduler: str | None = None,
    client: Client | None = None,
    show_progress: bool = True,
    console: Console | None = None,
    audit_log: AuditLog | None = None,
    origin: str = "api",
    check: bool = True,
    report_path: str | None = None,
    identity: str | None = None,
    job_id: str | None = None,
    progress: ProgressCallback | None = None,
    stop_check: StopCheck | None = None,
    quality_gate: Callable[[DataProfile], None] | None = None,
    resume_key: str | None = None,
    keeper: ModelKeeper | None = None,
) -> JobResult:
    """Run a job spec: fit, score every partition, threshold globally, write atomically.

    Before connecting to any cluster, the job is checked as ``adp validate`` checks it
    (:func:`adp.jobs.preflight.preflight`) and its output is checked by its sink. A job
    refused there leaves exactly one audit record (``job.refused``, outcome ``failure``,
    the one-line error as its reason) and starts no cluster.

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
    check : bool, default True
        Run the pre-flight checks first (False only when the caller just ran them).
    report_path : str, optional
        The report file the caller will write, checked by the pre-flight; default the
        spec's own ``report`` section.
    identity : str, optional
        Who runs the job (the service's verified caller), written into every audit record;
        default the operating-system user.
    job_id : str, optional
        The job's id in the audit trail (the service passes its own); default a new one.
    progress : callable, optional
        ``progress(stage, done, total)`` as each stage's partitions finish.
    stop_check : callable, optional
        Called while the job's tasks run; what it raises (such as
        :class:`adp.jobs.interrupts.JobCancelled`) stops the job like an interrupt.
    quality_gate : callable, optional
        Called with the source's profile (computed even when the spec does not ask for
        one) before the detector is fitted; what it raises stops the job before any
        scoring (the service's data-quality gate).
    resume_key : str, optional
        Make the job resumable under this key (the service's job id): a failed, cancelled
        or interrupted attempt leaves its staged scores with their SHA-256, and the next
        attempt under the same key computes only the partitions that are missing or do
        not verify (for the same fitted model and source).
    keeper : ModelKeeper, optional
        With ``resume_key``: where the fitted model is kept between attempts (a resumed
        attempt scores with the model the first one fitted). Without one, every attempt
        fits again and staged scores are reused only when the refit pickles identically.

    Returns
    -------
    JobResult

    Raises
    ------
    adp.errors.AdpError
        Any pre-flight refusal (see :func:`adp.jobs.preflight.preflight`).
    adp.errors.SpecError
        When the spec has no ``output`` or no ``detector`` section.
    adp.errors.OutputExistsError
        Before any work, when the output holds data and ``output.mode`` does not allow
        replacing or merging.
    adp.errors.AuditError
        When the job's audit records cannot be written: the job does not run (fail closed).
    """
    log = audit_log or AuditLog()
    close_orphaned_jobs(log, source=origin)  # jobs whose client died without an outcome
    try:
        output = job_output(spec)
        require_detector(spec)
        if check:
            preflight(spec, report_path=report_path)
        spec = with_io_timeouts(spec)
        sink = job_sink(spec, resume_key)
        sink.check()
    except Exception as exc:
        reason = job_error(exc, spec)
        record_refusal(
            log,
            reason,
            resource=spec.source.uri,
            name=spec.name,
            source=origin,
            identity=identity,
            job_id=job_id,
        )
        raise
    job_id = job_id or uuid.uuid4().hex
    owner = process_owner().to_dict()
    with InterruptGuard() as guard:
        audit = _JobAudit(
            log,
            job_id,
            origin,
            guard,
            identity=identity,
            progress=progress,
            stop_check=stop_check,
            quality_gate=quality_gate,
            keeper=keeper,
        )
        log.append(
            "job.submit",
            action="submit",
            resource=spec.source.uri,
            job_id=job_id,
            details={"name": spec.name, "output": output.uri, "owner": owner},
            source=origin,
            identity=identity,
        )
        running = False  # whether job.run's own records (started, outcome) are written
        try:
            with _client_for(spec, scheduler, client) as c:
                quiet_cancelled_gathers(c)
                report_client(c, jobs_started=1)
                try:
                    running = True
                    with (
                        audited(
                            log,
                            "job.run",
                            action="run",
                            resource=spec.source.uri,
                            job_id=job_id,
                            details={"name": spec.name, "owner": owner},
                            source=origin,
                            identity=identity,
                            client=c,
                        ),
                        lost_scheduler_is_an_error(c),
                        suspects_named(c),  # a KilledWorker names every suspect partition
                    ):
                        result = _execute(
                            spec, sink, c, audit, show_progress=show_progress, console=console
                        )
                except BaseException as exc:
                    if not scheduler_lost(c, exc):  # else it would wait out the reconnection
                        report_client(c, jobs_failed=1)
                    raise
                report_client(
                    c,
                    jobs_finished=1,
                    rows_read=result.rows,
                    fit_seconds=result.stage_seconds.get("fit", 0.0),
                    anomalies_flagged=result.anomalies,
                )
        except JobInterrupted as exc:
            if not running:  # stopped while its cluster started: close the job truthfully
                _record_early_interrupt(log, exc, spec, job_id, owner, audit)
            raise
    return result


def _record_early_interrupt(
    log: AuditLog,
    exc: JobInterrupted,
    spec: JobSpec,
    job_id: str,
    owner: dict[str, Any],
    audit: _JobAudit,
) -> None:
    """The ``interrupted`` outcome of a job stopped after ``job.submit`` but before its
    ``job.run`` records began (while its cluster was starting): no scheduler counted it."""
    name = str(getattr(exc, "signal_name", "SIGINT"))
    log.append(
        "job.run",
        action="run",
        resource=spec.source.uri,
        outcome="interrupted",
        reason=str(exc) or f"interrupted by {name}",
        job_id=job_id,
        details={"name": spec.name, "owner": owner, "signal": name, "stage": "cluster start"},
        source=audit.origin,
        identity=audit.identity,
    )


@contextlib.contextmanager
def _stopped_cleanly(c: Client) -> Iterator[None]:
    """On any error (an interrupt included), cancel the futures this block created and
    wait for their running tasks, so no task writes into staging after it is removed."""
    before = set(c.futures)
    try:
        yield
    except BaseException:
        if not scheduler_lost(c):
            cancel_job_work(c, set(c.futures) - before)
        raise


@dataclass(frozen=True)
class _JobAudit:
    """The audit trail of one job (its log, id, origin and caller), with the hooks that
    follow its progress and may stop it."""

    log: AuditLog
    job_id: str
    origin: str
    guard: InterruptGuard = field(default_factory=InterruptGuard)
    identity: str | None = None
    progress: ProgressCallback | None = None
    stop_check: StopCheck | None = None
    quality_gate: Callable[[DataProfile], None] | None = None
    keeper: ModelKeeper | None = None

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
            identity=self.identity,
        )


def _keep(detector: BaseDetector, keeper: ModelKeeper | None) -> str:
    """The SHA-256 of the fitted model's pickled bytes, kept by ``keeper`` when given."""
    data = serialize(detector)
    digest = hashlib.sha256(data).hexdigest()
    if keeper is not None:
        keeper.save(data, digest)
    return digest


def _execute(
    spec: JobSpec,
    sink: Sink,
    c: Client,
    audit: _JobAudit,
    *,
    show_progress: bool,
    console: Console | None,
) -> JobResult:
    output = job_output(spec)
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    source = spec.source
    workers = len(c.scheduler_info(n_workers=-1)["workers"])
    label = spec.evaluate.label if spec.evaluate else None
    kind = spec.evaluate.kind if spec.evaluate else None
    context = spec.context.to_context() if spec.context else None
    used = context.used_columns() if context else []
    opened = open_source(source, extra=[label, kind, *used], context=context)
    ddf = opened.frame
    kept = audit.keeper.load() if audit.keeper is not None else None
    detector = kept[0] if kept is not None else build_detector(spec)
    profiling = None
    if spec.profile or audit.quality_gate is not None:
        profiling = JobProfile(ddf, source.uri, source.storage_options, audit.quality_gate)
    t0 = time.perf_counter()
    if not detector.is_fitted:
        # the profile (and the quality gate) ride on the sample's pass over the source
        detector.fit(
            ddf,
            opened.features,
            sample_rows=spec.fit.sample_rows,
            random_state=spec.fit.random_state,
            key=source.key,
            strategy=spec.fit.strategy,
            missing=source.missing,
            inspect=profiling.inspection() if profiling else None,
        )
    elif profiling is not None:
        profiling.apart()
    data_profile = profiling.profile if profiling else None
    stage_seconds["fit"] = time.perf_counter() - t0

    def compute(tasks: Sequence[Any], what: str) -> list[Any]:
        t0 = time.perf_counter()
        done = compute_with_progress(
            c,
            tasks,
            what,
            console=console,
            show=show_progress,
            annotate=audit.annotate,
            progress=audit.progress,
            stop_check=audit.stop_check,
        )
        stage_seconds[what] = stage_seconds.get(what, 0.0) + time.perf_counter() - t0
        return done

    def step(value: Delayed) -> Any:
        if audit.stop_check is not None:
            audit.stop_check()
        with audit.annotate():
            return c.compute(value).result()

    stamp = None
    if sink.resume_key:
        digest = kept[1] if kept is not None else _keep(detector, audit.keeper)
        stamp = staging_stamp(spec, digest, ddf)
    with sink.session(compute=compute, step=step, stamp=stamp), _stopped_cleanly(c):
        t0 = time.perf_counter()
        detection = run_detection(
            detector,
            ddf,
            key=opened.carry,
            threshold=job_threshold(spec),
            explain=spec.explain.top_k if spec.explain else 0,
            stage=sink,
        )
        threshold = float(detection.threshold)
        stage_seconds["threshold"] = time.perf_counter() - t0 - stage_seconds.get("score", 0.0)

        t0 = time.perf_counter()
        inspect = functools.partial(evaluate_partition, label=label, kind=kind) if label else None
        tasks = sink.write(
            detection.frame,
            inspect=inspect,
            drop=[col for col in opened.carry if col not in opened.key],
        )
        results = compute_with_progress(
            c,
            tasks,
            "flag",
            console=console,
            show=show_progress,
            annotate=audit.annotate,
            progress=audit.progress,
            stop_check=audit.stop_check,
        )
        audit.record(
            "source.read",
            "read",
            source.uri,
            rows=sum(p.rows for p, _ in results),
            partitions=len(results),
        )
        stage_seconds["flag"] = time.perf_counter() - t0

        parts: list[WrittenPart] = [written for written, _ in results]
        evaluation = Evaluation.combine(e for _, e in results if e is not None) if label else None
        anomalies = sum(p.anomalies or 0 for p in parts)
        wall = time.perf_counter() - started
        manifest = manifest_for(
            parts,
            job=spec.name,
            job_id=audit.job_id,
            detector=detector.name,
            params=detector.get_params(),
            features=detector.features_,
            threshold=threshold,
            anomalies=anomalies,
            source=redact_url(source.uri),
            created=pd.Timestamp.now(tz="UTC").isoformat(),
        )
        audit.record(
            "output.write", "write", output.uri, rows=manifest["rows"], anomalies=anomalies
        )
        t0 = time.perf_counter()
        with audit.guard.deferred():  # a signal waits for the commit to end
            sink.commit(parts, manifest)
        stage_seconds["commit"] = time.perf_counter() - t0

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
        reused_partitions=sink.reused_partitions,
        context=getattr(detector, "context_", None),
    )
