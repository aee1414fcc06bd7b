"""``adp bench feedback`` on one small ODDS dataset, two rounds: the figures it reports are
the ones computed from the simulated labels, and it never writes to the user's audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.mark.slow
def test_two_rounds_on_breastw(client: Any, odds_dir: Path) -> None:
    from adp.bench.simulated_review import bench_feedback, label_budget, summary, verdicts
    from adp.observe.audit import AuditLog

    def labels_audited() -> int:
        with AuditLog() as log:
            return sum(r.event_type == "feedback.label" for r in log.records())

    before = labels_audited()
    frame = bench_feedback(
        ["breastw"],
        ["random", "uncertain"],
        client,
        odds_dir=odds_dir,
        members=("hbos", "isolation_forest"),
        max_rounds=2,
    )
    assert labels_audited() == before  # the simulation audits into a scratch folder

    assert frame.groupby("strategy")["round"].apply(list).to_dict() == {
        "random": [0, 1, 2],
        "uncertain": [0, 1, 2],
    }
    assert frame.groupby("strategy")["labels"].apply(list).to_dict()["uncertain"] == [0, 20, 40]
    start = frame[frame["round"] == 0]
    assert start["ap"].tolist() == start["ap_start"].tolist()  # round 0 is the parent
    assert start["ap"].nunique() == 1 and not start["learned"].any()
    assert frame[["ap", "ap_start", "ap_best_single", "p_at_n"]].stack().between(0, 1).all()
    assert frame["best_single"].isin(["hbos", "isolation_forest"]).all()
    assert (frame["anomalies_labelled"] <= frame["labels"]).all()
    last = summary(frame)
    assert len(last) == 2 and (last["labels"] == 40).all()
    # Learned member weights are scored wherever the labels held both classes.
    assert np.isfinite(last.loc[last["learned"], "ap_weights"]).all()
    assert last["learned"].any()
    lines = verdicts(frame)
    assert any(line.startswith("uncertain beats random on") for line in lines)
    assert label_budget(683, 0.01, 100) == 100 and label_budget(49097, 0.01, 100) == 491
