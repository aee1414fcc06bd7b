"""What a finished job did: :class:`JobResult`, printed as the summary, rendered in the
report, and stored as the service's job summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adp.io.profile import DataProfile
from adp.jobs.evaluation import Evaluation
from adp.redact import redact_url


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
    #: Partitions whose staged scores a resumed attempt reused (verified, not recomputed).
    reused_partitions: int = 0
    #: The detector's fitted context (``None`` without one): the report draws each top
    #: entity's seasonal baseline from it. Kept in memory only, never in :meth:`to_dict`.
    context: Any = field(default=None, repr=False, compare=False)

    @property
    def anomaly_share(self) -> float:
        return self.anomalies / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (secrets in the output's URL masked)."""
        out: dict[str, Any] = {
            "name": self.name,
            "output": redact_url(self.output_uri),
            "rows": self.rows,
            "partitions": self.partitions,
            "workers": self.workers,
            "anomalies": self.anomalies,
            "anomaly_share": self.anomaly_share,
            "threshold": self.threshold,
            "detector": self.detector,
            "features": list(self.features),
            "fit_rows": self.fit_rows,
            "wall_seconds": self.wall_seconds,
            "stage_seconds": dict(self.stage_seconds),
            "reused_partitions": self.reused_partitions,
        }
        if self.evaluation is not None:
            out["evaluation"] = {
                "precision": self.evaluation.precision,
                "recall": self.evaluation.recall,
                "true_positives": self.evaluation.true_positives,
                "false_positives": self.evaluation.false_positives,
                "false_negatives": self.evaluation.false_negatives,
            }
        if self.profile is not None:
            out["profile"] = self.profile.to_dict()
        return out


__all__ = ["JobResult"]
