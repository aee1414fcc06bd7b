"""What a resumable job keeps between attempts besides its staged scores: the fitted
model. A refit is not guaranteed to give the same model (sampling and the detectors' own
randomness), so a resumed attempt scores with the model its first attempt fitted, and its
staged scores are reused only for that model (:func:`adp.jobs.building.staging_stamp`).

The keeper stores the model's pickled bytes and their SHA-256 where its caller trusts them
(the service: a file in its state directory, the digest in its job database), and hands
back a model only when the bytes still hash to the digest it recorded (never a pickle it
did not write and verify).
"""

from __future__ import annotations

from typing import Protocol

from adp.detect.base import BaseDetector


class ModelKeeper(Protocol):
    """Keeps the fitted model of a resumable job between its attempts."""

    def load(self) -> tuple[BaseDetector, str] | None:
        """The model an earlier attempt fitted and the SHA-256 of its bytes, or None
        (none kept, or the kept bytes do not verify)."""

    def save(self, data: bytes, digest: str) -> None:
        """Keep ``data`` (the pickled fitted model) with its SHA-256 ``digest``."""


__all__ = ["ModelKeeper"]
