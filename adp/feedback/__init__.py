"""Analyst feedback: a review queue, labels with provenance, and models that learn from them.

::

    from adp.feedback import LabelStore, learn, next_rows
    batch = next_rows("out/scores", n=20, strategy="uncertain", model="sensors@3")
    LabelStore().add("sensors@3", batch.row_key[0], "anomaly", note="valve stuck")
    learn("sensors@3", ddf, method="semi_supervised").version   # sensors@4, with lineage

Modules: :mod:`~adp.feedback.labels` (the label store), :mod:`~adp.feedback.keys` (row keys),
:mod:`~adp.feedback.outputs` (scored outputs), :mod:`~adp.feedback.strategies` and
:mod:`~adp.feedback.review` (the review queue), :mod:`~adp.feedback.learners`,
:mod:`~adp.feedback.scorers`, :mod:`~adp.feedback.detectors`,
:mod:`~adp.feedback.semi_supervised` and :mod:`~adp.feedback.learn`
(learning from labels), :mod:`~adp.feedback.cli` (``adp review``). Imports are lazy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LABELS": "adp.feedback.labels",
        "Label": "adp.feedback.labels",
        "LabelStore": "adp.feedback.labels",
        "label_set_sha256": "adp.feedback.labels",
        "STRATEGIES": "adp.feedback.strategies",
        "next_rows": "adp.feedback.review",
        "open_output": "adp.feedback.outputs",
        "scored_frame": "adp.feedback.outputs",
        "learn": "adp.feedback.learn",
        "with_labels": "adp.feedback.learn",
        "RecalibratedDetector": "adp.feedback.detectors",
        "SemiSupervisedDetector": "adp.feedback.semi_supervised",
        "WeightedEnsembleDetector": "adp.feedback.detectors",
    },
)

__all__ = [
    "LABELS",
    "STRATEGIES",
    "Label",
    "LabelStore",
    "RecalibratedDetector",
    "SemiSupervisedDetector",
    "WeightedEnsembleDetector",
    "label_set_sha256",
    "learn",
    "next_rows",
    "open_output",
    "scored_frame",
    "with_labels",
]

if TYPE_CHECKING:  # pragma: no cover
    from adp.feedback.detectors import RecalibratedDetector as RecalibratedDetector
    from adp.feedback.detectors import WeightedEnsembleDetector as WeightedEnsembleDetector
    from adp.feedback.labels import LABELS as LABELS
    from adp.feedback.labels import Label as Label
    from adp.feedback.labels import LabelStore as LabelStore
    from adp.feedback.labels import label_set_sha256 as label_set_sha256
    from adp.feedback.learn import learn as learn
    from adp.feedback.learn import with_labels as with_labels
    from adp.feedback.outputs import open_output as open_output
    from adp.feedback.outputs import scored_frame as scored_frame
    from adp.feedback.review import next_rows as next_rows
    from adp.feedback.semi_supervised import SemiSupervisedDetector as SemiSupervisedDetector
    from adp.feedback.strategies import STRATEGIES as STRATEGIES
