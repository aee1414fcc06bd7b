"""The performance table: how each candidate detector did on labelled datasets.

The label-free selector (:mod:`adp.tuning.selector`) learns from this table which candidate
does well on datasets with which meta-features. ``adp bench selection --build`` builds it
(:func:`build_table`) over labelled Parquet files; ADP ships the one built over the shared
ODDS datasets as ``adp/tuning/data/selection_table.json``, with its provenance: every
dataset's SHA-256, the seeds, the candidates, the protocol, ADP's version and the date.

Protocol, per dataset and seed: one uniform sample of ``sample_rows`` rows (every row when
there are fewer); every candidate is fitted on it and judged on the same rows against the
labels (the transductive protocol of the ODDS benchmarks, as ``adp bench accuracy``);
the meta-features (:mod:`adp.tuning.metafeatures`) are computed without the labels.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from adp.errors import ConfigError, DataError
from adp.tuning.metafeatures import LANDMARK_ROWS, NAMES
from adp.tuning.space import Candidate

TABLE_FORMAT = 1
DEFAULT_ID = "isolation_forest"
"""The default detector the selector falls back to: an isolation forest at PyOD's defaults."""

CANDIDATES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (DEFAULT_ID, "isolation_forest", {}),
    ("isolation_forest:max_features=0.5", "isolation_forest", {"max_features": 0.5}),
    ("isolation_forest:max_samples=512", "isolation_forest", {"max_samples": 512}),
    ("hbos", "hbos", {}),
    ("hbos:n_bins=30", "hbos", {"n_bins": 30}),
    ("ecod", "ecod", {}),
    ("copod", "copod", {}),
    ("pca", "pca", {}),
    ("knn", "knn", {"n_neighbors": 10}),
    ("knn:n_neighbors=30,mean", "knn", {"n_neighbors": 30, "method": "mean"}),
    ("lof", "lof", {"n_neighbors": 35}),
    ("mcd", "mcd", {}),
    ("loda", "loda", {}),
    ("gmm", "gmm", {"n_components": 4}),
)
"""``(id, detector, parameters)`` of the candidates: fast detectors of different families
(trees, histograms, ECDFs, linear, neighbours, robust covariance, projections, mixtures).
``random_state`` is added per seed where the detector takes one."""

TABLE_PATH = "data/selection_table.json"


def candidate_for(candidate_id: str, seed: int | None, trial: int = 0) -> Candidate:
    """The :class:`~adp.tuning.space.Candidate` of a table candidate, seeded.

    Raises
    ------
    adp.errors.ConfigError
        For an id the table does not know, listing the known ones.
    """
    from adp.detect.registry import detector_info

    for cid, detector, params in CANDIDATES:
        if cid == candidate_id:
            full = dict(params)
            if seed is not None and "random_state" in detector_info(detector).valid_params():
                full["random_state"] = int(seed)
            return Candidate(trial, detector, full)
    raise ConfigError(
        f"unknown selection candidate {candidate_id!r}; known: {[c[0] for c in CANDIDATES]}"
    )


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Run:
    """One dataset at one seed: its meta-features and every candidate's figures."""

    dataset: str
    seed: int
    metafeatures: list[float]
    roc_auc: list[float]
    average_precision: list[float]
    fit_seconds: list[float] = field(default_factory=list)
    metafeature_seconds: float = math.nan


@dataclass
class PerformanceTable:
    """Candidates x (dataset, seed) figures, with the meta-features and the provenance.

    Attributes
    ----------
    candidates : list of str
        Candidate ids, in the order of every run's lists.
    metafeature_names : list of str
    runs : list of Run
    provenance : dict
        ``datasets`` (name, path, sha256, rows, features, anomalies), ``seeds``,
        ``sample_rows``, ``landmark_rows``, ``adp_version``, ``created``, ``candidates``
        (id, detector, params) and ``protocol``.
    """

    candidates: list[str]
    metafeature_names: list[str]
    runs: list[Run]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def datasets(self) -> list[str]:
        """Dataset names, in first-seen order."""
        return list(dict.fromkeys(r.dataset for r in self.runs))

    def without(self, dataset: str) -> PerformanceTable:
        """The table without one dataset's runs (for leave-one-dataset-out)."""
        runs = [r for r in self.runs if r.dataset != dataset]
        return PerformanceTable(self.candidates, self.metafeature_names, runs, self.provenance)

    def matrix(self, metric: str = "roc_auc") -> np.ndarray:
        """Runs x candidates of ``metric`` (NaN where a candidate failed)."""
        return np.array([getattr(r, metric) for r in self.runs], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        def clean(values: Sequence[float]) -> list[float | None]:
            return [None if not math.isfinite(v) else round(float(v), 6) for v in values]

        return {
            "format": TABLE_FORMAT,
            "provenance": self.provenance,
            "candidates": self.candidates,
            "metafeature_names": self.metafeature_names,
            "runs": [
                {
                    "dataset": r.dataset,
                    "seed": r.seed,
                    "metafeatures": clean(r.metafeatures),
                    "roc_auc": clean(r.roc_auc),
                    "average_precision": clean(r.average_precision),
                    "fit_seconds": clean(r.fit_seconds),
                    "metafeature_seconds": clean([r.metafeature_seconds])[0],
                }
                for r in self.runs
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str = "selection table") -> PerformanceTable:
        """Read :meth:`to_dict`'s output back.

        Raises
        ------
        adp.errors.DataError
            For another format, or runs whose lists do not match the candidates.
        """
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise DataError(f"{origin}: not a selection table of format {TABLE_FORMAT}")

        def floats(values: Any) -> list[float]:
            return [math.nan if v is None else float(v) for v in values]

        candidates = [str(c) for c in data["candidates"]]
        names = [str(n) for n in data["metafeature_names"]]
        runs = []
        for i, r in enumerate(data["runs"]):
            run = Run(
                str(r["dataset"]),
                int(r["seed"]),
                floats(r["metafeatures"]),
                floats(r["roc_auc"]),
                floats(r["average_precision"]),
                floats(r.get("fit_seconds") or []),
                floats([r.get("metafeature_seconds")])[0],
            )
            if len(run.roc_auc) != len(candidates) or len(run.metafeatures) != len(names):
                raise DataError(
                    f"{origin}: run {i} ({run.dataset}) has {len(run.roc_auc)} candidate "
                    f"figures and {len(run.metafeatures)} meta-features; the table names "
                    f"{len(candidates)} and {len(names)}"
                )
            runs.append(run)
        return cls(candidates, names, runs, dict(data.get("provenance") or {}))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (NaN as null)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return target


def load_table(path: str | Path | None = None) -> PerformanceTable:
    """Load a performance table: ``path``, or the one shipped with ADP.

    Raises
    ------
    adp.errors.DataError
        When the file is missing or is not a selection table.
    """
    if path is None:
        source = resources.files("adp.tuning").joinpath(TABLE_PATH)
        origin = f"the shipped selection table ({TABLE_PATH})"
        if not source.is_file():
            raise DataError(f"{origin} is missing: build one with 'adp bench selection --build'")
        text = source.read_text()
    else:
        origin = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise DataError(f"cannot read the selection table {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{origin} is not valid JSON: {exc}") from None
    return PerformanceTable.from_dict(data, origin)


def provenance(
    datasets: Sequence[dict[str, Any]], seeds: Sequence[int], sample_rows: int
) -> dict[str, Any]:
    """The provenance block of a table built now."""
    from importlib.metadata import version

    return {
        "datasets": list(datasets),
        "seeds": [int(s) for s in seeds],
        "sample_rows": int(sample_rows),
        "landmark_rows": LANDMARK_ROWS,
        "adp_version": version("adp"),
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "candidates": [{"id": c, "detector": d, "params": p} for c, d, p in CANDIDATES],
        "protocol": (
            "per dataset and seed: a uniform sample of sample_rows rows; each candidate is "
            "fitted on it and judged on the same rows (ROC-AUC, average precision); "
            "meta-features computed without the label"
        ),
    }


def empty_table() -> PerformanceTable:
    """A table with the current candidates and meta-feature names and no runs."""
    return PerformanceTable([c[0] for c in CANDIDATES], list(NAMES), [])


__all__ = [
    "CANDIDATES",
    "DEFAULT_ID",
    "PerformanceTable",
    "Run",
    "candidate_for",
    "empty_table",
    "load_table",
    "provenance",
    "sha256_file",
]
