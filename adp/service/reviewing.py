"""The review desk: the analyst-feedback loop behind the service's review page and its
``/review/next`` and ``/labels`` routes.

For a model and a job's scored output, :class:`ReviewDesk` picks the next rows to label
(:func:`adp.feedback.review.next_rows`, on the service's cluster) with their score, the
threshold, their ``top_features`` with the features' values, and for time-keyed data
their neighbourhood; and it stores an analyst's answer in the label store
(:class:`adp.feedback.labels.LabelStore`, audited in the service's audit trail) under the
caller's *verified* identity, the token's subject, never a name the request carries.

Both need the policy's ``labels:write`` on the model's name; a refusal is audited before
it is answered (403). The job must be one the caller may see (its owner, or
``jobs:read-all``), and must have succeeded with a lake output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from adp.errors import AccessDeniedError, AdpError, ConfigError, SpecError
from adp.service.control import JobNotFound
from adp.service.identity import Identity
from adp.service.policy import Decision

#: The permission the review page and the label routes need, on the model's name.
LABELS_WRITE = "labels:write"
#: The most rows one ``/review/next`` answers with.
MAX_ROWS = 100
#: Rows shown on each side of a reviewed row in time-keyed data.
CONTEXT_ROWS = 3


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: numpy and pandas scalars and arrays made plain,
    timestamps as ISO 8601 text, NaN and NaT as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [plain(v) for v in list(value)]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, pd.Timedelta | dt.timedelta):
        return str(pd.Timedelta(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _field(name: str, exc: ConfigError) -> SpecError:
    """A request field's error, named (answered 422)."""
    return SpecError(f"{name}: {exc}")


class ReviewDesk:
    """The review queue and the label store as a verified caller may use them.

    Parameters
    ----------
    service : adp.service.server.Service
        The started service (its policy, audit trail, jobs and cluster).
    store : LabelStore, optional
        Where labels go; default the configured store (``adp.feedback.url``), opened on
        first use and audited in the service's audit trail.
    """

    def __init__(self, service: Any, store: Any = None) -> None:
        self.service = service
        self._store = store
        self._own_store = store is None
        self._client: Any = None
        self._lock = threading.Lock()

    # -- what the caller may do --------------------------------------------------------
    def authorize(self, who: Identity, model: str) -> tuple[str, int | None]:
        """The model's name and version (None unless ``name@<number>``), when the policy
        grants ``who`` :data:`LABELS_WRITE` on the name; else a denial, audited first.

        Raises
        ------
        adp.errors.SpecError
            For an invalid model reference (422).
        adp.errors.AccessDeniedError
            When the policy refuses (403).
        """
        from adp.models.api import parse_ref

        try:
            name, version = parse_ref(model)
        except ConfigError as exc:
            raise _field("model", exc) from None
        decision: Decision = self.service.policy.decide(who.roles, LABELS_WRITE, name)
        if not decision.allowed:
            self.service.control.deny(who, decision)
        return name, version if isinstance(version, int) else None

    def job(self, who: Identity, name: str, job_id: str | None) -> tuple[Any, Any]:
        """The job whose output is reviewed and its spec: ``job_id`` (the caller must be
        able to see it), or the caller's newest succeeded job that scored with model
        ``name``.

        Raises
        ------
        adp.service.control.JobNotFound
            No such job (404).
        adp.errors.ConfigError
            The job has no lake output to review (409).
        """
        from adp.jobs.spec import JobSpec

        if job_id:
            record = self.service.control.get(who, job_id)
        else:
            record = next(
                (
                    r
                    for r in self.service.control.jobs(who, "succeeded")
                    if _model_name(r.spec) == name
                ),
                None,
            )
            if record is None:
                raise JobNotFound(
                    f"no succeeded job you may see scored with model {name!r}: give job=ID"
                )
        if record.state != "succeeded":
            raise ConfigError(
                f"job {record.id} has no scored output to review (state {record.state})"
            )
        if "output" not in record.spec:
            raise ConfigError(f"job {record.id} is a stream job: review a batch job's output")
        spec = JobSpec.from_dict(record.spec, origin=f"job {record.id}")
        if spec.output is None or spec.output.table is not None:
            raise ConfigError(
                f"job {record.id} wrote a database table: the review page reads a lake output"
            )
        return record, spec

    # -- the work ----------------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The label store (opened on first use)."""
        with self._lock:
            if self._store is None:
                from adp.feedback.labels import LabelStore

                self._store = LabelStore(audit_log=self.service.audit_log)
            return self._store

    @contextlib.contextmanager
    def _on_cluster(self) -> Iterator[None]:
        """Compute on the service's cluster (its client, else one of the desk's own)."""
        client = self.service.client
        if client is None and self.service.scheduler_address:
            with self._lock:
                if self._client is None:
                    from distributed import Client

                    self._client = Client(
                        self.service.scheduler_address, timeout=10, set_as_default=False
                    )
                client = self._client
        if client is None:
            yield
            return
        with client.as_current():
            yield

    def next(
        self,
        who: Identity,
        model: str,
        job_id: str | None = None,
        strategy: str = "uncertain",
        n: int = 1,
        context: int = CONTEXT_ROWS,
        seed: int = 0,
    ) -> dict[str, Any]:
        """The next ``n`` rows of a job's output for ``who`` to label, as JSON-able data.

        Returns
        -------
        dict
            ``model``, ``version``, ``job``, ``strategy``, ``threshold``, ``key`` (the key
            columns), ``time`` (the time column, or None), ``features``, ``labelled``
            (the model's label counts) and ``rows``: each with ``row_key``, ``key`` (column
            to value), ``score``, ``is_anomaly``, ``priority``, ``top_features`` (name and
            value, most important first), ``values`` (every feature's value) and
            ``neighbourhood`` (None unless time-keyed).
        """
        from adp.feedback.strategies import check_strategy

        name, version = self.authorize(who, model)
        try:
            check_strategy(strategy)
        except ConfigError as exc:
            raise _field("strategy", exc) from None
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ROWS:
            raise SpecError(f"n: give a number of rows from 1 to {MAX_ROWS}, got {n!r}")
        if isinstance(context, bool) or not isinstance(context, int) or not 0 <= context <= 50:
            raise SpecError(f"context: give 0 to 50 rows on each side, got {context!r}")
        record, spec = self.job(who, name, job_id)
        version = version if version is not None else _job_version(record.spec, name)
        rows, scored = self._pick(spec, name, version, strategy, n, context, seed)
        features = scored.features
        return {
            "model": name,
            "version": version,
            "job": record.id,
            "strategy": strategy,
            "threshold": scored.threshold,
            "key": list(scored.key),
            "time": _time_of(scored),
            "features": features,
            "labelled": self.store.counts(name),
            "rows": [_item(r, scored.key) for r in rows.to_dict(orient="records")],
        }

    def _pick(
        self,
        spec: Any,
        name: str,
        version: int | None,
        strategy: str,
        n: int,
        context: int,
        seed: int,
    ) -> tuple[pd.DataFrame, Any]:
        from adp.feedback.outputs import open_output
        from adp.feedback.review import next_rows

        options = spec.output.storage_options
        model = name if version is None else f"{name}@{version}"
        try:
            with self._on_cluster():
                scored = open_output(spec.output.uri, options)
                rows = next_rows(
                    scored,
                    n,
                    strategy,
                    model=model,
                    store=self.store,
                    source=spec.source.uri,
                    seed=seed,
                    storage_options=options,
                    context=context,
                    values=True,
                )
        except (SpecError, AccessDeniedError):
            raise
        except AdpError as exc:
            raise ConfigError(f"cannot review the output of model {model}: {exc}") from None
        return rows, scored

    def label(
        self,
        who: Identity,
        model: str,
        row_key: str | Mapping[str, Any],
        label: str,
        job_id: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Store ``who``'s ``label`` of one row (audited with the token's subject).

        With ``job_id`` the key is checked against that job's output key columns, and the
        version the job scored with is recorded when the model names none.

        Returns
        -------
        dict
            The stored label (:meth:`adp.feedback.labels.Label.to_dict`).
        """
        from adp.feedback.labels import check_label

        name, version = self.authorize(who, model)
        try:
            check_label(label)
        except ConfigError as exc:
            raise _field("label", exc) from None
        columns = None
        if job_id:
            from adp.feedback.outputs import open_output

            record, spec = self.job(who, name, job_id)
            version = version if version is not None else _job_version(record.spec, name)
            try:
                columns = open_output(spec.output.uri, spec.output.storage_options).key
            except AdpError as exc:
                raise ConfigError(f"cannot read job {job_id}'s output: {exc}") from None
        try:
            stored = self.store.add(
                name,
                row_key,
                label,
                version=version,
                who=who.subject,
                note=note,
                key_columns=columns,
            )
        except SpecError:
            raise
        except ConfigError as exc:
            raise SpecError(str(exc)) from None
        return dict(plain(stored.to_dict()))

    def close(self) -> None:
        """Close what the desk opened (its label store and its client)."""
        with self._lock:
            if self._own_store and self._store is not None:
                self._store.close()
                self._store = None
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None


def _model_name(spec: Mapping[str, Any]) -> str | None:
    """The name of the registered model a job spec scores with (None when it fits one)."""
    from adp.models.api import parse_ref

    ref = (spec.get("detector") or {}).get("model")
    if not ref:
        return None
    try:
        return str(parse_ref(ref)[0])
    except ConfigError:
        return None


def _job_version(spec: Mapping[str, Any], name: str) -> int | None:
    """The version of ``name`` a job scored with, when its spec names a number."""
    from adp.models.api import parse_ref

    ref = (spec.get("detector") or {}).get("model")
    if not ref:
        return None
    try:
        found, version = parse_ref(ref)
    except ConfigError:
        return None
    return version if found == name and isinstance(version, int) else None


def _time_of(scored: Any) -> str | None:
    from adp.feedback.neighbourhood import time_column

    return time_column(scored)


def _item(row: Mapping[str, Any], key: list[str]) -> dict[str, Any]:
    """One chosen row as the page and the API show it."""
    values = row.get("values") or {}
    top = row.get("top_features")
    top = [] if top is None or (isinstance(top, float) and top != top) else list(top)
    return {
        "row_key": row["row_key"],
        "key": plain({c: row[c] for c in key}),
        "score": plain(row["score"]),
        "is_anomaly": plain(row.get("is_anomaly")),
        "priority": plain(row.get("priority")),
        "top_features": [{"name": str(f), "value": plain(values.get(str(f)))} for f in top],
        "values": plain(values),
        "neighbourhood": plain(row.get("neighbourhood")),
    }


__all__ = ["CONTEXT_ROWS", "LABELS_WRITE", "MAX_ROWS", "ReviewDesk", "plain"]
