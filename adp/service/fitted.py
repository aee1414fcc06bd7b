"""The fitted model of a service job, kept between its attempts (see
:mod:`adp.jobs.resume`): the bytes in ``<state-dir>/service/models/<job id>.model``, their
SHA-256 in the job's row. A model is handed back only when the file still hashes to the
recorded digest and holds a detector (:func:`adp.models.store.load_verified`)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from adp.detect.base import BaseDetector
from adp.errors import ModelIntegrityError
from adp.models.store import load_verified
from adp.service.store import JobStore


class KeptModel:
    """A :class:`adp.jobs.resume.ModelKeeper` for one service job.

    Parameters
    ----------
    store : JobStore
        Holds the digest.
    job_id : str
        The job (a hex id the service made: safe as a file name).
    folder : Path
        Where the model files live.
    """

    def __init__(self, store: JobStore, job_id: str, folder: Path) -> None:
        self.store = store
        self.job_id = job_id
        self.path = folder / f"{job_id}.model"
        self.problem: str | None = None

    def load(self) -> tuple[BaseDetector, str] | None:
        """The kept model and its digest, or None (none kept, or it does not verify:
        :attr:`problem` then says why and the job fits again)."""
        digest = self.store.model_digest(self.job_id)
        if digest is None:
            return None
        try:
            data = self.path.read_bytes()
            model = load_verified(
                data, digest, f"the kept model of job {self.job_id}", BaseDetector
            )
        except (OSError, ModelIntegrityError) as exc:
            self.problem = str(exc)
            return None
        return model, digest

    def save(self, data: bytes, digest: str) -> None:
        """Write the model file (0600, atomically), then record its digest."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)
        self.store.remember_model(self.job_id, digest)

    def discard(self) -> None:
        """Remove the kept model (the job committed: no attempt will need it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


__all__ = ["KeptModel"]
