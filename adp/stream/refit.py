"""Refit requests: drift asks for the stream's model to be fitted again.

With ``drift: {refit: true}`` in a stream spec, each time drift is found the runner writes
a refit request: a YAML file in ``adp.stream.refit-dir`` (default ``<state-dir>/refits``)
holding

- ``job``: a job spec, in the shape ``adp run`` and the ADP service read (``source``,
  ``detector``, ``fit``, ``threshold``, ``output``), that fits the stream's detector again,
  with the same parameters, on the spec's batch source (``fit.source``, else
  ``threshold.source``: typically a lake path that new data keeps arriving in);
- what asked for it: the stream (name, run id, source), its model (and, for a registered
  model, ``register.name``: the name a new version should be registered under) and the
  drift check (method, statistic, limit);

and records ``stream.refit`` (``requested``, with the file's path) in the audit trail. The
service picks requests up and runs them through its job lifecycle (the stream package
imports neither :mod:`adp.jobs` nor :mod:`adp.service`). A request appears under its final
name only once its audit record is written (it is written to a temporary file, audited,
then renamed into place), readable by its owner only: a batch source's storage options
may hold credentials, which is also why the audit record names the source without them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from adp.errors import ConfigError
from adp.redact import redact_url
from adp.stream.drift import DriftCheck
from adp.stream.model import StreamModel
from adp.stream.spec import BatchSourceSpec, StreamSpec

__all__ = ["REQUEST_KIND", "RefitRequests", "refit_dir"]

#: The ``kind`` of a refit request file.
REQUEST_KIND = "adp-refit-request"


def refit_dir() -> Path:
    """``adp.stream.refit-dir``, or ``<state-dir>/refits``."""
    from adp.config import settings

    cfg = settings()
    configured = cfg.stream.refit_dir
    return Path(configured).expanduser() if configured else cfg.state_dir / "refits"


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that are plain data (a refit must be able to write them as YAML)."""
    out = {}
    for name, value in params.items():
        try:
            out[name] = orjson.loads(orjson.dumps(value))
        except TypeError:
            continue  # an object (a callable, an estimator): the detector's default then
    return out


def _source(source: BatchSourceSpec, missing: str) -> dict[str, Any]:
    out = source.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    out["uri"] = source.uri
    if missing != "fail":
        out["missing"] = missing
    return out


class RefitRequests:
    """Writes a stream's refit requests (see the module).

    Parameters
    ----------
    spec : StreamSpec
        The stream's spec (with ``drift.refit`` and a batch source).
    model : StreamModel
        The stream's model.
    stream_id : str
        The run's id.
    audit : callable
        ``(event_type, action, details)``: appends one audit record, raising when it
        cannot.
    directory : path, optional
        Where requests go (default :func:`refit_dir`).
    """

    def __init__(
        self,
        spec: StreamSpec,
        model: StreamModel,
        stream_id: str,
        audit: Callable[[str, str, dict[str, Any]], None],
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.spec, self.model, self.stream_id, self.audit = spec, model, stream_id, audit
        self.directory = Path(directory) if directory is not None else refit_dir()
        self.written: list[Path] = []

    def job(self, request_id: str) -> dict[str, Any]:
        """The job spec of a refit (a mapping ``adp run`` validates)."""
        spec, detector = self.spec, self.model.detector
        if spec.fit is not None:
            source = _source(spec.fit.source, spec.fit.missing)
            chosen = {"name": spec.fit.detector.name, "params": dict(spec.fit.detector.params)}
            fit = spec.fit.model_dump(
                mode="json", include={"sample_rows", "random_state"}, exclude_none=True
            )
        else:
            if spec.threshold.source is None:
                raise ConfigError(
                    "drift.refit needs a batch source (fit.source or threshold.source)"
                )
            source = _source(spec.threshold.source, getattr(detector, "missing_", "fail"))
            params = _plain(detector.get_params())
            chosen = {"name": params.pop("name", detector.name), "params": params}
            fit = {}
        job: dict[str, Any] = {
            "name": f"{spec.name}-refit",
            "source": source,
            "detector": chosen,
            "output": {"uri": str(self.directory / request_id / "scores.parquet")},
        }
        if fit:
            job["fit"] = fit
        if spec.threshold.contamination is not None:
            job["threshold"] = {"contamination": spec.threshold.contamination}
        return job

    def __call__(self, check: DriftCheck) -> Path:
        """Write the request for ``check`` and audit it; returns the file's path.

        Raises
        ------
        adp.errors.AuditError
            When the audit record cannot be written (no request is left behind).
        adp.errors.ConfigError
            When the request cannot be written.
        """
        now = datetime.now(UTC)
        request_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        request: dict[str, Any] = {
            "kind": REQUEST_KIND,
            "version": 1,
            "id": request_id,
            "requested_at": now.isoformat().replace("+00:00", "Z"),
            "stream": {
                "name": self.spec.name,
                "run": self.stream_id,
                "source": self.spec.source.shown(),
            },
            "model": {
                "ref": self.model.ref,
                "model_id": self.model.model_id,
                "detector": self.model.detector.name,
            },
            "drift": {
                "method": check.method,
                "statistic": check.statistic,
                "limit": check.limit,
                "scores": check.scores,
            },
            "job": self.job(request_id),
        }
        if self.spec.model is not None:
            request["register"] = {"name": self.model.ref.split("@", 1)[0]}
        path = self.directory / f"{self.spec.name}-{request_id}.yaml"
        tmp = self._write_hidden(request, path)
        try:
            source = request["job"]["source"]["uri"]
            self.audit(
                "stream.refit",
                "requested",
                {
                    "path": str(path),
                    "model": self.model.ref,
                    "source": redact_url(source) or source,
                    "drift": request["drift"],
                },
            )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.written.append(path)
        return path

    def _write_hidden(self, request: dict[str, Any], path: Path) -> str:
        """``request`` as YAML in a hidden temporary file beside ``path`` (0600, synced)."""
        text = yaml.safe_dump(request, sort_keys=False)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise ConfigError(
                f"cannot write a refit request in {self.directory}: {exc.strerror}; set "
                "adp.stream.refit-dir to a writable directory"
            ) from exc
        return tmp
