"""The service's job driver: takes queued jobs in order and runs each on the cluster, at
most ``max_running`` at once, through the same :func:`adp.jobs.runner.run_job` that
``adp run`` calls.

Each running job has its own :class:`distributed.Client` on the shared scheduler, so
cancelling one job cancels only its own futures. A cancel request (stored in the job's
row) is seen between two finished tasks and stops the job as an interrupt would: its
futures cancelled, its staging removed, the output untouched, the audit outcome
``cancelled``. Progress in partitions goes to the job's row as tasks finish.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client

from adp.errors import AdpError, one_line
from adp.io.profile import DataProfile
from adp.jobs.interrupts import JobCancelled, JobInterrupted
from adp.jobs.refusal import job_error
from adp.jobs.runner import JobResult, run_job
from adp.jobs.spec import JobSpec
from adp.observe.audit import AuditLog
from adp.service.fitted import KeptModel
from adp.service.store import JobRecord, JobStore
from adp.service.stream_jobs import is_stream, run_stream_job, stream_spec

logger = logging.getLogger(__name__)

#: ``authorize(record, spec)``: None to let the job start, else why it may not (the
#: policy is checked again when a job starts, not only when it is submitted).
Authorize = Callable[[JobRecord, Any], str | None]
#: ``quality(record)``: the job's data-quality gate, or None when the policy sets none.
QualityGate = Callable[[JobRecord], Callable[[DataProfile], None] | None]
#: Seconds between two looks at the queue when nothing wakes the driver.
POLL_SECONDS = 0.5
#: The longest error text kept in a job's row.
ERROR_LIMIT = 600


class ServiceStopping(KeyboardInterrupt):
    """The service is shutting down: its running jobs end ``interrupted``."""

    outcome = "interrupted"
    signal_name = "shutdown"

    def __init__(self) -> None:
        super().__init__("interrupted: the service shut down; resume the job to finish it")


class JobDriver:
    """Run queued jobs from a :class:`JobStore` on a Dask scheduler.

    Parameters
    ----------
    store : JobStore
        Where jobs wait and where their state goes.
    scheduler_address : str
        The scheduler every job's client connects to.
    audit_log : AuditLog
        The audit trail the jobs write to.
    max_running : int
        Jobs run at once; the rest stay queued.
    reports_dir : Path
        Where each job's HTML report is written (``<id>.html``).
    authorize : callable, optional
        Checked when a job starts (see :data:`Authorize`).
    quality : callable, optional
        Gives each job's data-quality gate (see :data:`QualityGate`).
    """

    def __init__(
        self,
        store: JobStore,
        scheduler_address: str,
        audit_log: AuditLog,
        *,
        max_running: int,
        reports_dir: Path,
        authorize: Authorize | None = None,
        quality: QualityGate | None = None,
    ) -> None:
        self.store = store
        self.address = scheduler_address
        self.audit_log = audit_log
        self.max_running = max_running
        self.reports_dir = reports_dir
        self.models_dir = reports_dir.parent / "models"
        self.authorize = authorize
        self.quality = quality
        self._slots = threading.Semaphore(max_running)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start taking jobs from the queue (in a background thread)."""
        self._dispatcher = threading.Thread(target=self._dispatch, name="adp-driver", daemon=True)
        self._dispatcher.start()

    def wake(self) -> None:
        """Look at the queue now (a job was submitted or resumed)."""
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs; running jobs are stopped (``interrupted``) and waited for."""
        self._stopping.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> int:
        """How many jobs this driver runs now."""
        with self._lock:
            return len(self._threads)

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=POLL_SECONDS):
                continue
            try:
                record = None if self._stopping.is_set() else self.store.claim()
            except Exception:  # the database hiccuped: try again shortly
                logger.exception("cannot read the job queue")
                record = None
            if record is None:
                self._slots.release()
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            thread = threading.Thread(
                target=self._run_and_release, args=(record,), name=f"adp-job-{record.id[:8]}"
            )
            with self._lock:
                self._threads[record.id] = thread
            thread.start()

    def _run_and_release(self, record: JobRecord) -> None:
        try:
            self.run(record)
        except Exception:  # never lose the slot, whatever happened
            logger.exception("job %s: the driver failed", record.id)
        finally:
            with self._lock:
                self._threads.pop(record.id, None)
            self._slots.release()
            self._wake.set()

    # -- one job -----------------------------------------------------------------------
    def run(self, record: JobRecord) -> JobRecord:
        """Run one claimed (``running``) job to its end and record how it ended."""
        store = self.store
        store.log(
            record.id, f"started (attempt {record.attempt}) by the service for {record.owner}"
        )
        if is_stream(record.spec):
            return self._run_stream(record)
        try:
            spec = JobSpec.from_dict(record.spec, origin=f"job {record.id}")
        except AdpError as exc:
            return self._end(record, "failed", error=str(exc))
        if self.authorize is not None:
            denied = self.authorize(record, spec)
            if denied is not None:
                return self._end(record, "failed", error=f"denied when starting: {denied}")
        report = self.reports_dir / f"{record.id}.html"
        # one client per job, for its run and its report: cancelling it stops only its work
        client = Client(self.address, set_as_default=False, timeout=30)
        try:
            with client.as_current():
                try:
                    result = self._execute(record, spec, report, client)
                except JobCancelled as exc:
                    return self._end(record, "cancelled", error=str(exc))
                except (JobInterrupted, ServiceStopping) as exc:
                    return self._end(record, "interrupted", error=str(exc))
                except Exception as exc:
                    logger.debug("job %s failed:\n%s", record.id, traceback.format_exc())
                    return self._end(record, "failed", error=str(job_error(exc, spec)))
                report_path = self._report(record, spec, result, report)
        finally:
            client.close(timeout=10)
        summary = result.to_dict()
        reused = (
            f", {result.reused_partitions} of {result.partitions} partitions' scores reused"
            if result.reused_partitions
            else ""
        )
        store.log(
            record.id,
            f"succeeded: {result.rows} rows, {result.anomalies} anomalies, threshold "
            f"{result.threshold:.6g}, in {result.wall_seconds:.1f} s{reused}",
        )
        return store.finish(record.id, "succeeded", summary=summary, report=report_path)

    def _stop_check(self, record: JobRecord) -> Callable[[], None]:
        def stop_check() -> None:
            if self._stopping.is_set():
                raise ServiceStopping()
            by = self.store.cancel_requested(record.id)
            if by is not None:
                raise JobCancelled(by)

        return stop_check

    def _run_stream(self, record: JobRecord) -> JobRecord:
        """Run a stream job (:mod:`adp.service.stream_jobs`) on a client of its own."""
        try:
            spec = stream_spec(record.spec["stream"], origin=f"stream job {record.id}")
        except AdpError as exc:
            return self._end(record, "failed", error=str(exc))
        if self.authorize is not None:
            denied = self.authorize(record, spec)
            if denied is not None:
                return self._end(record, "failed", error=f"denied when starting: {denied}")
        self.store.progress(record.id, "stream", 0, 0)
        client = Client(self.address, set_as_default=False, timeout=30)
        try:
            state, summary, reason = run_stream_job(
                spec,
                client=client,
                audit_log=self.audit_log,
                identity=record.owner,
                job_id=record.id,
                stop_check=self._stop_check(record),
            )
        except Exception as exc:
            logger.debug("stream %s failed:\n%s", record.id, traceback.format_exc())
            return self._end(record, "failed", error=str(exc))
        finally:
            client.close(timeout=10)
        events, results = summary.get("events", 0), summary.get("results", 0)
        line = (
            f"{state}: {events} events, {results} results, {summary.get('anomalies', 0)} "
            f"anomalies, {summary.get('dead_letters', 0)} dead letters"
        )
        self.store.log(record.id, line + (f" ({reason})" if reason else ""))
        return self.store.finish(
            record.id,
            state,
            summary=summary,
            error=one_line(reason, ERROR_LIMIT) if reason else None,
        )

    def _execute(self, record: JobRecord, spec: JobSpec, report: Path, client: Client) -> JobResult:
        last: dict[str, Any] = {"stage": None, "time": 0.0}

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if stage != last["stage"]:
                self.store.log(record.id, f"{stage}: {total} partitions")
            if stage != last["stage"] or done == total or now - last["time"] > 0.5:
                self.store.progress(record.id, stage, done, total)
                last.update(stage=stage, time=now)

        stop_check = self._stop_check(record)
        keeper = KeptModel(self.store, record.id, self.models_dir)
        result = run_job(
            spec,
            client=client,
            show_progress=False,
            audit_log=self.audit_log,
            origin="service",
            identity=record.owner,
            job_id=record.id,
            progress=progress,
            stop_check=stop_check,
            report_path=str(report),
            resume_key=record.id,
            keeper=keeper,
            quality_gate=self.quality(record) if self.quality else None,
        )
        if keeper.problem:
            self.store.log(record.id, f"warning: fitted again: {keeper.problem}")
        keeper.discard()
        return result

    def _report(
        self, record: JobRecord, spec: JobSpec, result: JobResult, path: Path
    ) -> str | None:
        """Write the job's report (on the job's client, current); a report that fails
        leaves the job succeeded (its output is committed) with a warning in its log."""
        from adp.jobs.preflight import with_io_timeouts
        from adp.jobs.report import write_report

        spec = with_io_timeouts(spec)
        try:
            written = write_report(
                result, path, spec.report, output=spec.output, source=spec.source
            )
        except Exception as exc:
            reason = one_line(str(job_error(exc, spec)), 300)
            self.store.log(record.id, f"warning: the report could not be written: {reason}")
            return None
        return str(written)

    def _end(self, record: JobRecord, state: str, *, error: str) -> JobRecord:
        error = one_line(error, ERROR_LIMIT)
        self.store.log(record.id, f"{state}: {error}")
        return self.store.finish(record.id, state, error=error)


__all__ = ["Authorize", "JobDriver", "ServiceStopping"]
