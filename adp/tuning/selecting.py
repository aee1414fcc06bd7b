"""Running a selection for one dataset on the cluster: meta-features, the selector's
decision (:class:`adp.tuning.selector.Selector`) and the Model Centrality check."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from adp.tuning.perftable import DEFAULT_ID, candidate_for
from adp.tuning.selector import Selection, Selector


def _model_centrality(X: np.ndarray, ids: list[str], seed: int) -> dict[str, float]:
    """Fit ``ids`` on ``X`` and return each one's Model Centrality (runs on a worker)."""
    from adp.tuning.selection import model_centrality
    from adp.tuning.trials import contamination_of, fit_candidate

    fitted, scores = [], []
    for cid in ids:
        candidate = candidate_for(cid, seed)
        params, share = contamination_of(candidate.params, 0.1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. MCD on a rank-deficient sample
                scorer, _ = fit_candidate(candidate.detector, params, share, X, seed)
                s = np.asarray(scorer.decision_function(X), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a candidate failing here cannot be checked
            s = None
        if s is not None and np.isfinite(s).all():
            fitted.append(cid)
            scores.append(s)
    if len(scores) < 3:
        return {c: math.nan for c in fitted}
    values = model_centrality(np.stack(scores))
    return {c: float(v) for c, v in zip(fitted, values, strict=True)}


def select_detector(
    ddf: Any,
    features: list[str] | None = None,
    selector: Selector | None = None,
    random_state: int | None = None,
    *,
    allowed: Sequence[str] | None = None,
    check_criteria: bool = True,
    panel_size: int = 4,
    client: Any = None,
) -> Selection:
    """Choose a detector for an unlabelled dataset.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data, with finite numeric features.
    features : list of str, optional
        Default: every column of ``ddf``.
    selector : Selector, optional
        Default: trained on the table shipped with ADP.
    random_state : int, optional
        Seeds the landmark sample, the landmarkers and the chosen detector.
    allowed : sequence of str, optional
        Candidate ids to choose among (the default is always allowed).
    check_criteria : bool
        Check a non-default pick with Model Centrality among the ``panel_size`` best-ranked
        candidates and the default, fitted on the landmark sample; fall back when it ranks
        the pick below the default.
    client : distributed.Client, optional
        Default: the current client.

    Returns
    -------
    Selection
    """
    from distributed import get_client

    from adp.tuning.metafeatures import compute_metafeatures
    from adp.tuning.perftable import load_table

    started = time.perf_counter()
    client = client or get_client()
    selector = selector or Selector(load_table())
    with client.as_current():
        meta = compute_metafeatures(ddf, features, random_state=random_state, keep_sample=True)
    X = meta.extra.pop("X")
    prediction = selector.predict(meta)
    choice, reason, fallback, proposed = selector.decide(prediction, allowed)
    ids = prediction.candidates
    unchecked = choice
    criteria: dict[str, Any] = {}
    criteria_started = time.perf_counter()
    if check_criteria and choice != DEFAULT_ID:
        ranked = sorted(
            (i for i, c in enumerate(ids) if c != DEFAULT_ID and (allowed is None or c in allowed)),
            key=lambda i: -prediction.utility[i],
        )[:panel_size]
        panel = [DEFAULT_ID, *[ids[i] for i in ranked]]
        seed = 0 if random_state is None else int(random_state)
        mc = client.submit(_model_centrality, X, panel, seed, pure=False).result()
        agree = math.isfinite(mc.get(choice, math.nan)) and mc[choice] >= mc.get(
            DEFAULT_ID, -math.inf
        )
        criteria = {"criterion": "model_centrality", "values": mc, "agree": bool(agree)}
        if not agree:
            reason = f"fallback: Model Centrality ranks {choice} below the default ({reason})"
            choice, fallback = DEFAULT_ID, True
    criteria_seconds = time.perf_counter() - criteria_started
    candidate = candidate_for(choice, random_state)
    allowed_ids = [c for c in ids if allowed is None or c in allowed or c == DEFAULT_ID]
    return Selection(
        choice=choice,
        detector=candidate.detector,
        params=dict(candidate.params),
        fallback=fallback,
        reason=reason,
        proposed=ids[proposed],
        unchecked=unchecked,
        confidence=float(prediction.confidence[proposed]),
        utility=float(prediction.utility[proposed]),
        expected_gain=float(prediction.gain[proposed]),
        support=prediction.support,
        utilities={c: float(prediction.utility[ids.index(c)]) for c in allowed_ids},
        neighbours=prediction.weights,
        metafeatures=meta,
        criteria=criteria,
        seconds={
            "metafeatures": meta.seconds,
            "criteria": criteria_seconds,
            "total": time.perf_counter() - started,
        },
    )


__all__ = ["select_detector"]
