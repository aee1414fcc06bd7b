"""Retention: expired job outputs and reports are deleted, old audit records archived.

:func:`apply_retention` (``adp retention apply``) does two things, each only when its
setting is not null:

1. ``adp.retention.results-days``: for every job of the service (its job store:
   ``adp.service.database``, else ``sqlite:///<state-dir>/service.db``) that *succeeded*
   and finished longer ago than that, delete what the job committed and its report, then
   mark its row (output and report forgotten, a line in its log).
2. ``adp.retention.audit-days``: move older audit records to the archive table
   (:func:`adp.observe.retention.archive_audit`), so ``adp audit verify`` still passes.

*Only ADP's own outputs are deleted, and only the job's own.* A folder output is deleted
only when its ``_adp_manifest.json`` names the job (its ``job_id`` when the manifest has
one; else the job's name, with a ``created`` time within the job's run) and the folder
holds no file that manifest does not list. A table output is dropped only when its
manifest row (:func:`adp.io.sinks.table_manifest`) names the job and the job did not
``upsert`` into it (rows merged by upsert may be other jobs'). Anything else (foreign
files, no manifest) is left where it is and reported; an output another commit replaced
is kept too (reported ``replaced``: this job's own output is gone). A local
folder is first renamed aside in one step and checked again there, so a job committing to
the same place meanwhile is never deleted; on an object store the manifest goes first
(the dataset stops being a committed one at once), then the files it lists.

*Every deletion is audited* (``retention.delete``, outcome ``started`` then ``success``
or ``failure``, resource the output URI without secrets, identity the caller) and does not
happen when its record cannot be written. A dry run changes nothing and records nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from adp.config import settings
from adp.db import engine_for, write_transaction
from adp.errors import AdpError, AuditError, OutputExistsError, one_line
from adp.io.outputs import MANIFEST, VERSIONS, describe_output, manifest_paths
from adp.io.sinks import MANIFEST_TABLE, table_exists, table_manifest
from adp.observe.audit import AuditLog, audited
from adp.observe.retention import AuditArchive, archive_audit
from adp.paths import check_allowed, is_local, local_path
from adp.redact import redact_text, redact_url
from adp.service.store import JobRecord, JobStore

__all__ = ["ACTIONS", "EVENT", "RetentionItem", "RetentionReport", "apply_retention", "names_job"]

#: The audit event of every deletion.
EVENT = "retention.delete"
#: What happened to one output or report.
ACTIONS = ("deleted", "would delete", "absent", "replaced", "left", "failed")


@dataclass(frozen=True)
class RetentionItem:
    """One expired job's output or report, and what retention did with it.

    Attributes
    ----------
    job_id : str
        The job.
    kind : {"folder", "table", "report"}
        What it is.
    resource : str
        Where (the output URI without secrets, ``#table`` for a table; the report's path).
    action : str
        One of ``deleted``, ``would delete`` (dry run), ``absent`` (already gone),
        ``replaced`` (another commit took its place: this job's output is gone, the other
        is kept), ``left`` (not ADP's alone: see ``reason``), ``failed``.
    reason : str or None
        Why it was replaced, left, or failed.
    """

    job_id: str
    kind: str
    resource: str
    action: str
    reason: str | None = None

    def render(self) -> str:
        """One line for people."""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.action:<12} {self.kind:<6} {self.resource} (job {self.job_id}){why}"


@dataclass(frozen=True)
class RetentionReport:
    """What :func:`apply_retention` did (or, with ``dry_run``, would do)."""

    now: str
    dry_run: bool
    results_days: float | None
    audit_days: float | None
    jobs: int = 0
    items: list[RetentionItem] = field(default_factory=list)
    audit: AuditArchive | None = None

    @property
    def failed(self) -> list[RetentionItem]:
        """The items whose deletion failed."""
        return [i for i in self.items if i.action == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (``adp retention apply --json``)."""
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "results_days": self.results_days,
            "audit_days": self.audit_days,
            "jobs": self.jobs,
            "items": [vars(i) for i in self.items],
            "audit": None if self.audit is None else self.audit.to_dict(),
        }

    def render(self) -> str:
        """A short plain-text account."""
        lines = []
        if self.results_days is None:
            lines.append("job outputs: kept (adp.retention.results-days is not set)")
        else:
            lines.append(
                f"job outputs: {self.jobs} succeeded job(s) finished more than "
                f"{self.results_days:g} days ago"
            )
            lines.extend(f"  {item.render()}" for item in self.items)
        audit = self.audit
        if self.audit_days is None or audit is None:
            lines.append("audit trail: kept (adp.retention.audit-days is not set)")
        else:
            verb = "would move" if self.dry_run else "moved"
            span = f" (seq {audit.first_seq}..{audit.through_seq})" if audit.moved else ""
            lines.append(
                f"audit trail: {verb} {audit.moved} record(s) older than {audit.cutoff}{span} "
                f"to {audit.archive_table}"
            )
        if self.dry_run:
            lines.append("dry run: nothing was changed")
        return "\n".join(lines)


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def names_job(manifest: dict[str, Any], record: JobRecord) -> bool:
    """Whether an output manifest names ``record``'s job: its ``job_id`` when the manifest
    carries one, else the job's name with a ``created`` time within the job's run."""
    if "job_id" in manifest:
        return bool(manifest["job_id"] == record.id)
    created = _parse_time(manifest.get("created"))
    if manifest.get("job") != record.name or created is None:
        return False
    if record.started is None or record.finished is None:
        return False
    return record.started <= created <= record.finished


class _Run:
    """One retention run over one job store and audit log."""

    def __init__(
        self,
        store: JobStore,
        log: AuditLog,
        *,
        dry_run: bool,
        identity: str | None,
        source: str,
        days: float,
    ) -> None:
        self.store, self.log = store, log
        self.dry_run, self.identity, self.source, self.days = dry_run, identity, source, days
        self.reports = (settings().state_dir / "service" / "reports").resolve()

    def job(self, record: JobRecord) -> list[RetentionItem]:
        items = []
        output = dict(record.spec.get("output") or {}) if record.output is not None else {}
        if output.get("uri"):
            items.append(self._guarded(record, output))
        if record.report is not None:
            items.append(self._report(record))
        if not self.dry_run:
            gone = {"deleted", "absent", "replaced"}
            gone_output = all(i.action in gone for i in items if i.kind != "report")
            gone_report = all(i.action in gone for i in items if i.kind == "report")
            said = "; ".join(f"{i.kind} {i.resource}: {i.action}" for i in items)
            self.store.expire(
                record.id,
                f"retention ({self.days:g} days): {said}",
                output=gone_output,
                report=gone_report,
            )
        return items

    def _guarded(self, record: JobRecord, output: dict[str, Any]) -> RetentionItem:
        uri = str(output["uri"])
        table = output.get("table")
        kind = "table" if table else "folder"
        shown = f"{redact_url(uri)}#{table}" if table else str(redact_url(uri))
        try:
            if table:
                return self._table(record, uri, str(table), str(output.get("mode")), shown)
            return self._folder(record, uri, output.get("storage_options"), shown)
        except (AdpError, OSError, SQLAlchemyError, ValueError) as exc:
            reason = one_line(str(redact_text(str(exc))), 300)
            return RetentionItem(record.id, kind, shown, "failed", reason)

    def _audited(self, record: JobRecord, kind: str, shown: str, **details: Any) -> Any:
        return audited(
            self.log,
            EVENT,
            action="delete",
            resource=shown,
            job_id=record.id,
            details={"kind": kind, "days": self.days, **details},
            identity=self.identity,
            source=self.source,
        )

    # -- folders -----------------------------------------------------------------------
    def _folder(
        self, record: JobRecord, uri: str, options: dict[str, Any] | None, shown: str
    ) -> RetentionItem:
        check_allowed(uri)
        state = describe_output(uri, options)
        item = _verdict(record, "folder", shown, state.manifest, state.files, state.foreign)
        if item is not None or self.dry_run:
            return item or RetentionItem(record.id, "folder", shown, "would delete")
        assert state.manifest is not None
        files = len(manifest_paths(state.manifest))
        with self._audited(record, "folder", shown, files=files):
            if is_local(uri):
                _delete_local(uri, state.manifest, shown)
            else:
                _delete_remote(uri, options, state.manifest)
        return RetentionItem(record.id, "folder", shown, "deleted")

    # -- tables ------------------------------------------------------------------------
    def _table(
        self, record: JobRecord, url: str, table: str, mode: str, shown: str
    ) -> RetentionItem:
        manifest = table_manifest(url, table)
        if manifest is None:
            if not table_exists(url, table):
                return RetentionItem(record.id, "table", shown, "absent")
            return RetentionItem(
                record.id, "table", shown, "left", "no ADP manifest names this table"
            )
        if not names_job(manifest, record):
            return RetentionItem(record.id, "table", shown, "replaced", _other(manifest))
        if mode == "upsert":
            return RetentionItem(
                record.id,
                "table",
                shown,
                "left",
                "the job merged into it (upsert): it may hold other jobs' rows",
            )
        if self.dry_run:
            return RetentionItem(record.id, "table", shown, "would delete")
        with self._audited(record, "table", shown, table=table):
            _drop_table(url, table, manifest)
        return RetentionItem(record.id, "table", shown, "deleted")

    # -- reports -----------------------------------------------------------------------
    def _report(self, record: JobRecord) -> RetentionItem:
        path = Path(str(record.report))
        shown = str(path)
        if path.name != f"{record.id}.html" or path.resolve().parent != self.reports:
            return RetentionItem(
                record.id, "report", shown, "left", f"not a report of the service ({self.reports})"
            )
        if not path.exists():
            return RetentionItem(record.id, "report", shown, "absent")
        if self.dry_run:
            return RetentionItem(record.id, "report", shown, "would delete")
        try:
            with self._audited(record, "report", shown):
                path.unlink(missing_ok=True)
        except (AuditError, OSError) as exc:
            return RetentionItem(record.id, "report", shown, "failed", one_line(str(exc), 300))
        return RetentionItem(record.id, "report", shown, "deleted")


def _other(manifest: dict[str, Any]) -> str:
    said = ", ".join(
        f"{k} {manifest[k]}" for k in ("job_id", "job", "created") if manifest.get(k) is not None
    )
    return f"its manifest names another commit ({said or 'no job'})"


def _verdict(
    record: JobRecord,
    kind: str,
    shown: str,
    manifest: dict[str, Any] | None,
    files: list[str],
    foreign: list[str],
) -> RetentionItem | None:
    """Why a folder is not to be deleted (None when it is this job's and ADP's alone)."""
    if not files:
        return RetentionItem(record.id, kind, shown, "absent")
    if manifest is None:
        return RetentionItem(record.id, kind, shown, "left", "no ADP manifest: not ADP's output")
    if not names_job(manifest, record):
        return RetentionItem(record.id, kind, shown, "replaced", _other(manifest))
    if foreign:
        return RetentionItem(
            record.id,
            kind,
            shown,
            "left",
            f"holds {len(foreign)} file(s) its manifest does not list (e.g. {foreign[0]!r})",
        )
    return None


def _delete_local(uri: str, manifest: dict[str, Any], shown: str) -> None:
    """Rename the folder aside in one step, check it there, then remove it.

    Raises
    ------
    OSError
        When the folder changed since it was checked (it is put back, and kept).
    """
    target = Path(os.path.abspath(local_path(uri)))
    aside = target.parent / f".{target.name}.adp-expired-{uuid.uuid4().hex[:12]}"
    os.rename(target, aside)
    state = describe_output(str(aside))
    if state.manifest == manifest and not state.foreign:
        shutil.rmtree(aside)
        return
    try:
        os.rename(aside, target)
    except OSError as exc:
        raise OSError(
            f"{shown} changed while retention ran and another commit took its place; what "
            f"was there is kept at {aside}"
        ) from exc
    raise OSError(f"{shown} changed while retention ran (another commit); kept")


def _delete_remote(uri: str, options: dict[str, Any] | None, manifest: dict[str, Any]) -> None:
    """The manifest first (the dataset is no longer committed), then its files and version."""
    fs, root = fsspec.core.url_to_fs(uri, **(options or {}))
    root = str(root).rstrip("/")
    fs.rm(f"{root}/{MANIFEST}")
    paths = [f"{root}/{p}" for p in manifest_paths(manifest)]
    if paths:
        fs.rm(paths)
    prefix = str(manifest.get("prefix") or "").strip("/")
    if prefix.startswith(f"{VERSIONS}/") and fs.exists(f"{root}/{prefix}"):
        fs.rm(f"{root}/{prefix}", recursive=True)
    fs.invalidate_cache()


def _drop_table(url: str, table: str, manifest: dict[str, Any]) -> None:
    """Drop ``table`` and its manifest row in one transaction, if the manifest is still
    ``manifest`` (another commit meanwhile leaves both)."""
    manifests = sa.table(MANIFEST_TABLE, sa.column("table_name"), sa.column("manifest"))
    with write_transaction(engine_for(url)) as conn:
        text = conn.execute(
            sa.select(manifests.c.manifest).where(manifests.c.table_name == table)
        ).scalar_one_or_none()
        if text is None or json.loads(text) != manifest:
            raise OutputExistsError(
                f"table {table!r} was committed again while retention ran; it is kept"
            )
        sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)
        conn.execute(sa.delete(manifests).where(manifests.c.table_name == table))


def _open_store() -> JobStore | None:
    """The service's job store (as :class:`adp.service.server.Service` opens it), or None
    when the service never ran here (a missing SQLite file)."""
    cfg = settings()
    url = cfg.service.database or f"sqlite:///{cfg.state_dir / 'service.db'}"
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).is_file():
        return None
    return JobStore(url, state_dir=cfg.state_dir)


def apply_retention(
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    identity: str | None = None,
    source: str = "cli",
) -> RetentionReport:
    """Delete expired job outputs and reports, and archive old audit records.

    Parameters
    ----------
    now : datetime, optional
        The time retention counts back from (default: now, UTC).
    dry_run : bool, default False
        Report what would be deleted and moved; change and record nothing.
    identity : str, optional
        Who applies retention, for the audit records (default: the operating-system
        user).
    source : str, default "cli"
        The component, for the audit records.

    Returns
    -------
    RetentionReport
        Every expired job's output and report with what was done, and the audit archive.

    Raises
    ------
    adp.errors.AuditError
        When the audit log cannot be opened, or does not verify and so is not archived.
    adp.errors.ConfigError
        For an invalid service database URL.
    """
    cfg = settings()
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    days = cfg.retention.results_days
    expired: list[JobRecord] = []
    items: list[RetentionItem] = []
    with AuditLog() as log:
        store = None if days is None else _open_store()
        if store is not None and days is not None:
            try:
                run = _Run(store, log, dry_run=dry_run, identity=identity, source=source, days=days)
                expired = store.expirable(moment - dt.timedelta(days=days))
                for record in expired:
                    items.extend(run.job(record))
            finally:
                store.close()
        archived = archive_audit(log, now=moment, dry_run=dry_run, identity=identity, source=source)
    return RetentionReport(
        moment.isoformat(),
        dry_run,
        days,
        cfg.retention.audit_days,
        jobs=len(expired),
        items=items,
        audit=archived,
    )
