"""What the service does for a verified caller, whatever the door (the HTTP API or the web
pages): submit, list, read, cancel and resume jobs, each decided by the policy first and
each denial audited before it is answered.

Errors are ADP's own: :class:`~adp.errors.AccessDeniedError` (403),
:class:`JobNotFound` (404), :class:`~adp.errors.SpecError` (422) and
:class:`~adp.errors.ConfigError` for a job in the wrong state (409).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from adp.errors import AccessDeniedError, ConfigError, SpecError
from adp.io.profile import DataProfile
from adp.jobs.spec import JobSpec
from adp.observe.audit import AuditLog
from adp.paths import is_local
from adp.redact import redact_url
from adp.service.identity import Identity
from adp.service.policy import Decision, Policy, job_checks, quality_gate
from adp.service.store import JobRecord, JobStore, new_job_id
from adp.service.stream_jobs import STREAM_KEY, is_stream, stream_checks, stream_spec
from adp.stream.spec import StreamSpec

logger = logging.getLogger(__name__)

#: The largest job spec the service reads, in bytes.
MAX_SPEC_BYTES = 256 * 1024
#: Who sees and cancels every job, not only their own.
READ_ALL = "jobs:read-all"
CANCEL_ALL = "jobs:cancel-all"


class JobNotFound(KeyError):
    """No job has this id (or the caller may not know that it exists)."""


def _mask(value: Any) -> Any:
    """The spec with every URL's password and every storage option's secret masked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("storage_options", "storage-options", "anchor-storage-options"):
                out[key] = {k: "***" for k in (item or {})} if isinstance(item, dict) else "***"
            else:
                out[key] = _mask(item)
        return out
    if isinstance(value, list):
        return [_mask(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def _absolute_paths(data: Any) -> None:
    """Refuse relative local paths: the service's working directory is not the caller's.
    (``adp submit`` and the Python client resolve them before sending.)"""
    if not isinstance(data, dict):
        return
    for section in ("source", "output", "report"):
        part = data.get(section)
        for field in ("uri", "path"):
            uri = part.get(field) if isinstance(part, dict) else None
            if isinstance(uri, str) and is_local(uri):
                path = uri.removeprefix("file://")
                if not os.path.isabs(path):
                    raise SpecError(
                        f"{section}.{field}: {uri!r} is a relative path; the service cannot "
                        "know your working directory: give an absolute path (adp submit "
                        "resolves them for you)"
                    )


def _parse(text: str) -> Any:
    """A spec's text as data: JSON (what the client sends) directly, else YAML."""
    import json

    import yaml

    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow mappings start with "{" too
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"the job spec is not valid YAML or JSON: {exc}") from None


def _check_detector(spec: JobSpec) -> None:
    """The detector's name and parameters (and a registered model's existence), checked
    at submit time so a typo is a 422 naming the field, not a failed job."""
    from adp.errors import DetectorError, ModelNotFoundError
    from adp.jobs.preflight import check_detector

    try:
        check_detector(spec)
    except DetectorError as exc:
        field = "detector.name" if str(exc).startswith("unknown detector") else "detector.params"
        raise SpecError(f"{field}: {exc}") from None
    except ModelNotFoundError as exc:
        raise SpecError(f"detector.model: {exc}") from None


_warmed = threading.Event()


def warm_up() -> None:
    """Import what checking a submitted spec needs (the detector catalogue and every
    classic detector's library), so the first submission answers as fast as the rest.
    Once per process."""
    if _warmed.is_set():
        return
    _warmed.set()
    from adp.detect.catalog import CLASSIC
    from adp.detect.detector import create_detector

    for entry in CLASSIC:
        try:
            create_detector(entry.name)
        except Exception:  # an optional library that is absent: checked at submit time
            logger.debug("warming detector %s failed", entry.name, exc_info=True)


class JobControl:
    """Jobs as a caller may see and change them.

    Parameters
    ----------
    store : JobStore
        The job records.
    policy : Policy
        Who may do what.
    audit_log : AuditLog
        Where submissions and denials are recorded.
    wake : callable, optional
        Called after a job is queued (the driver looks at the queue at once).
    """

    def __init__(
        self,
        store: JobStore,
        policy: Policy,
        audit_log: AuditLog,
        wake: Any = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.audit_log = audit_log
        self._wake = wake or (lambda: None)

    # -- decisions ---------------------------------------------------------------------
    def deny(self, who: Identity | str, decision: Decision, *, job_id: str | None = None) -> None:
        """Audit a denial, then raise it as :class:`AccessDeniedError`."""
        subject = who.subject if isinstance(who, Identity) else str(who)
        self.audit_log.append(
            "policy.decision",
            action=decision.action,
            resource=decision.resource,
            outcome="denied",
            reason=decision.reason,
            job_id=job_id,
            identity=subject,
            source="service",
        )
        raise AccessDeniedError(f"{subject} may not {decision.action}: {decision.reason}")

    def check(self, who: Identity, checks: Iterable[tuple[str, str | None]]) -> None:
        """Raise (audited) unless the policy grants every check to ``who``'s roles."""
        decision = self.policy.decide_all(who.roles, list(checks))
        if not decision.allowed:
            self.deny(who, decision)

    def start_denial(self, record: JobRecord, spec: JobSpec | StreamSpec) -> str | None:
        """The policy again, when a queued job or stream starts (roles as submitted); the
        denial is audited and returned, or None when it may start."""
        checks = stream_checks(spec) if isinstance(spec, StreamSpec) else job_checks(spec)
        decision = self.policy.decide_all(record.roles, checks)
        if decision.allowed:
            return None
        try:
            self.deny(record.owner, decision, job_id=record.id)
        except AccessDeniedError as exc:
            return str(exc)
        return decision.reason  # pragma: no cover - deny always raises

    def quality_gate(self, record: JobRecord) -> Callable[[DataProfile], None] | None:
        """The data-quality gate of a job (None when the policy sets no minimum): called
        with the source's profile before fitting, it audits an override and raises
        (audited) :class:`AccessDeniedError` for data below ``quality.min_score``."""
        if self.policy.quality.min_score is None:
            return None

        def gate(profile: DataProfile) -> None:
            quality = profile.quality
            decision = quality_gate(self.policy, record.roles, quality.score)
            if not decision.allowed:
                self.deny(
                    record.owner,
                    replace(decision, resource=record.spec["source"]["uri"]),
                    job_id=record.id,
                )
            self.store.log(record.id, f"data {quality.render()}: {decision.reason}")
            if "overridden" in decision.reason:
                self.audit_log.append(
                    "policy.decision",
                    action=decision.action,
                    resource=decision.resource,
                    outcome="success",
                    reason=decision.reason,
                    job_id=record.id,
                    identity=record.owner,
                    source="service",
                )

        return gate

    # -- jobs --------------------------------------------------------------------------
    def submit(self, who: Identity, text: str | bytes) -> JobRecord:
        """Validate a job spec (YAML or JSON text), check the policy, and queue the job.

        Raises
        ------
        adp.errors.SpecError
            For a spec that does not validate (the field named).
        adp.errors.AccessDeniedError
            When the policy does not grant the job (audited first).
        """
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(f"the job spec is {len(text)} bytes; the limit is {MAX_SPEC_BYTES}")
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SpecError(f"the job spec is not UTF-8 text (byte {exc.start})") from None
        data = _parse(text)
        if isinstance(data, dict) and is_stream(data):
            return self._submit_stream(who, data[STREAM_KEY])
        _absolute_paths(data)
        spec = JobSpec.from_dict(data, origin="job spec")
        if spec.output is None or spec.detector is None:
            raise SpecError("the service runs scoring jobs: give 'detector' and 'output'")
        _check_detector(spec)
        self.check(who, job_checks(spec))
        job_id = new_job_id()
        # audited first: a submission whose record cannot be written is not queued
        self.audit_log.append(
            "service.submit",
            action="jobs:submit",
            resource=spec.source.uri,
            job_id=job_id,
            details={"name": spec.name, "output": spec.output.uri},
            identity=who.subject,
            source="service",
        )
        record = self.store.create(
            name=spec.name,
            owner=who.subject,
            roles=who.roles,
            spec=spec.to_dict(),
            spec_shown=_mask(spec.to_dict()),
            output=redact_url(spec.output.uri),
            log=f"queued by {who.subject}",
            job_id=job_id,
        )
        self._wake()
        return record

    def _submit_stream(self, who: Identity, data: Any) -> JobRecord:
        """Queue a stream job (``{"stream": {...}}``): validated, the policy checked
        (:func:`adp.service.stream_jobs.stream_checks`), audited, then queued."""
        if isinstance(data, dict):
            for section in ("fit", "threshold"):
                part = data.get(section)
                _absolute_paths({"source": part.get("source")} if isinstance(part, dict) else {})
        spec = stream_spec(data)
        self.check(who, stream_checks(spec))
        job_id = new_job_id()
        shown = spec.to_dict()
        self.audit_log.append(
            "service.submit",
            action="jobs:submit",
            resource=spec.source.shown(),
            job_id=job_id,
            details={"name": spec.name, "kind": "stream"},
            identity=who.subject,
            source="service",
        )
        sink = spec.sinks.sql
        record = self.store.create(
            name=spec.name,
            owner=who.subject,
            roles=who.roles,
            spec={STREAM_KEY: shown},
            spec_shown={STREAM_KEY: _mask(shown)},
            output=redact_url(f"{sink.url}#{sink.table}") if sink is not None else None,
            log=f"stream queued by {who.subject}",
            job_id=job_id,
        )
        self._wake()
        return record

    def _may_see(self, who: Identity, record: JobRecord) -> bool:
        if record.owner == who.subject:
            return True
        return self.policy.decide(who.roles, READ_ALL).allowed

    def get(self, who: Identity, job_id: str) -> JobRecord:
        """The job, when ``who`` owns it or may read all jobs (else a denial, audited)."""
        try:
            record = self.store.get(job_id)
        except KeyError:
            raise JobNotFound(job_id) from None
        if not self._may_see(who, record):
            self.deny(
                who,
                Decision(
                    allowed=False,
                    action=READ_ALL,
                    resource=f"job:{job_id}",
                    reason=f"the job belongs to another user and no role of "
                    f"{list(who.roles)} grants {READ_ALL}",
                ),
                job_id=job_id,
            )
        return record

    def jobs(self, who: Identity, state: str | None = None) -> list[JobRecord]:
        """``who``'s jobs, or every job for a role that may read all."""
        everyone = self.policy.decide(who.roles, READ_ALL).allowed
        return self.store.jobs(owner=None if everyone else who.subject, state=state)

    def logs(self, who: Identity, job_id: str) -> list[str]:
        """The job's log lines (``time  line``)."""
        self.get(who, job_id)
        return [f"{time.isoformat()}  {line}" for time, line in self.store.logs(job_id)]

    def report(self, who: Identity, job_id: str) -> Path:
        """The job's HTML report file."""
        record = self.get(who, job_id)
        if record.report is None or not Path(record.report).is_file():
            raise JobNotFound(f"job {job_id} has no report (state {record.state})")
        return Path(record.report)

    def cancel(self, who: Identity, job_id: str) -> JobRecord:
        """Cancel a queued or running job (its owner, or a role that may cancel all)."""
        record = self.get(who, job_id)
        if record.owner != who.subject:
            decision = self.policy.decide(who.roles, CANCEL_ALL, f"job:{job_id}")
            if not decision.allowed:
                self.deny(who, decision, job_id=job_id)
        if record.terminal:
            raise ConfigError(f"job {job_id} has already ended ({record.state})")
        record = self.store.request_cancel(job_id, who.subject)
        self.audit_log.append(
            "service.cancel",
            action="jobs:cancel",
            resource=f"job:{job_id}",
            job_id=job_id,
            identity=who.subject,
            source="service",
        )
        self.store.log(job_id, f"cancel asked by {who.subject}")
        return record

    def resume(self, who: Identity, job_id: str) -> JobRecord:
        """Queue a failed, cancelled or interrupted job again (policy checked anew)."""
        record = self.get(who, job_id)
        spec = JobSpec.from_dict(record.spec, origin=f"job {job_id}")
        self.check(who, job_checks(spec))
        record = self.store.requeue(job_id)
        self.audit_log.append(
            "service.resume",
            action="jobs:submit",
            resource=spec.source.uri,
            job_id=job_id,
            details={"attempt": record.attempt},
            identity=who.subject,
            source="service",
        )
        self.store.log(job_id, f"resumed by {who.subject} (attempt {record.attempt})")
        self._wake()
        return record


__all__ = ["JobControl", "JobNotFound"]
