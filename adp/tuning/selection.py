"""Choosing a detector without labels: consensus-based internal criteria.

Without ground truth, a search can only compare candidates with each other. ADP uses the
*consensus* family of unsupervised outlier model selection (UOMS) strategies reviewed by
Ma, Zhao & Akoglu, "The Need for Unsupervised Outlier Model Selection: A Review and
Evaluation of Internal Evaluation Strategies", SIGKDD Explorations 25(1), 2023. Their
premise: detectors err in different ways but agree on true outliers, so a candidate whose
ranking of the rows agrees with the others is more likely to be good.

``model_centrality`` (MC, the default)
    A candidate's mean rank correlation with every other candidate's scores on the same
    rows. The paper's reference code (``UOMS/Internal_Evaluation/concensus-based/MC.py``)
    uses Kendall's tau; ADP uses Spearman's rho, computed for all pairs at once as one
    matrix product of ranks (``O(m^2 n)`` for ``m`` candidates and ``n`` rows instead of
    ``m^2`` separate ``O(n log n)`` tau computations). Both are rank correlations and order
    candidates almost identically. Equivalently (exactly, without ties): a candidate's
    Spearman correlation with the *consensus ranking*, the mean of all candidates' ranks;
    the sum of standardised rank vectors is proportional to the centred mean rank, so the
    two orderings coincide and ADP offers only one of them.
``top_consensus``
    Top-focused: the consensus is the mean of the candidates' standardised scores (the
    classic "average" outlier ensemble); its top ``fraction`` of rows (10% by default) are
    taken as pseudo-anomalies, and each candidate is scored by its average precision
    against them. Detection quality lives at the top of a ranking, where MC's
    whole-ranking correlation is dominated by the ordering of the many normal rows; scores
    rather than ranks are averaged so that one dissenting candidate cannot pull rows that
    all the others put far out back into the bulk. This pseudo-ground-truth variant is
    ADP's; it is evaluated beside MC by ``adp bench criteria``, not taken from the paper.

Caveats, from the same paper and from :func:`adp.bench.model_search.selection_table`: the
criteria reward agreement, not accuracy. A space crowded with one family (say twenty
isolation forests) pulls the centre toward it, and on data where most candidates fail the
same way, the consensus is confidently wrong. The paper reports that consensus-based
strategies do not outperform an isolation forest with default hyperparameters, while
costing a fit of every candidate; measure on labelled data like yours (``adp bench
criteria``) before trusting a pick; the learned selector (:mod:`adp.tuning.selector`) uses
Model Centrality only as a check on its own pick. With fewer than three successful candidates the
criteria cannot discriminate and every candidate scores the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

from adp.errors import ConfigError
from adp.tuning.trials import TrialOutcome

CriterionFunction = Callable[[np.ndarray], np.ndarray]


def _standardized_ranks(scores: np.ndarray) -> np.ndarray:
    """Rows of ``scores`` (candidates x rows) as centred, unit-norm rank vectors."""
    ranks = rankdata(scores, axis=1)
    ranks -= ranks.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(ranks, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, ranks / norms, 0.0)


def spearman_matrix(scores: np.ndarray) -> np.ndarray:
    """Pairwise Spearman correlations of the candidates (rows of ``scores``).

    A candidate with constant scores correlates 0 with everything (it ranks nothing).
    """
    z = _standardized_ranks(np.asarray(scores, dtype=np.float64))
    return np.clip(z @ z.T, -1.0, 1.0)


def model_centrality(scores: np.ndarray) -> np.ndarray:
    """Model Centrality: each candidate's mean Spearman correlation with all the others.

    Parameters
    ----------
    scores : ndarray of shape (n_candidates, n_rows)
        Every candidate's anomaly scores on the same rows.

    Returns
    -------
    ndarray of shape (n_candidates,)
        In ``[-1, 1]``, higher = more central; zeros when there is one candidate.
    """
    m = scores.shape[0]
    if m < 2:
        return np.zeros(m)
    corr = spearman_matrix(scores)
    return (corr.sum(axis=1) - np.diag(corr)) / (m - 1)


def top_consensus(scores: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Each candidate's average precision against the top ``fraction`` of the consensus
    (the mean of the candidates' standardised scores).

    Parameters
    ----------
    scores : ndarray of shape (n_candidates, n_rows)
    fraction : float
        Share of rows, by mean rank over all candidates, taken as pseudo-anomalies.

    Returns
    -------
    ndarray of shape (n_candidates,)
        In ``[0, 1]``, higher = the candidate puts the consensus anomalies higher.
    """
    from sklearn.metrics import average_precision_score

    scores = np.asarray(scores, dtype=np.float64)
    m, n = scores.shape
    if m < 2:
        return np.zeros(m)
    std = scores.std(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > 0, (scores - scores.mean(axis=1, keepdims=True)) / std, 0.0)
    centre = z.mean(axis=0)
    k = min(n - 1, max(1, math.ceil(fraction * n)))
    pseudo = np.zeros(n, dtype=np.int8)
    pseudo[np.argsort(-centre, kind="stable")[:k]] = 1
    return np.array([average_precision_score(pseudo, row) for row in scores])


CRITERIA: dict[str, CriterionFunction] = {
    "model_centrality": model_centrality,
    "top_consensus": top_consensus,
}
"""Unsupervised criteria by name; all are higher-is-better."""

DEFAULT_CRITERION = "model_centrality"


def criterion(name: str) -> CriterionFunction:
    """Look up an unsupervised criterion by name.

    Raises
    ------
    adp.errors.ConfigError
        Listing the known criteria.
    """
    try:
        return CRITERIA[name]
    except KeyError:
        raise ConfigError(
            f"unknown unsupervised criterion {name!r}; use one of {sorted(CRITERIA)}, "
            "'selector' (the learned selector), or give label= for roc_auc, "
            "average_precision or f1"
        ) from None


def judge(outcomes: Sequence[TrialOutcome], name: str) -> list[TrialOutcome]:
    """Fill in the criterion as each successful outcome's ``score``; drop the score arrays.

    Runs on a worker (the arrays stay on the cluster; only the small outcomes return).
    """
    function = criterion(name)
    ok = [o for o in outcomes if o.status == "ok" and o.scores is not None]
    judged = {}
    if ok:
        values = function(np.stack([o.scores for o in ok]))  # type: ignore[misc]
        judged = {o.trial: float(v) for o, v in zip(ok, values, strict=True)}
    out = []
    for outcome in outcomes:
        slim = outcome.without_scores()
        if outcome.trial in judged:
            slim.score = judged[outcome.trial] if len(ok) > 1 else math.nan
        out.append(slim)
    return out


__all__ = [
    "CRITERIA",
    "DEFAULT_CRITERION",
    "criterion",
    "judge",
    "model_centrality",
    "spearman_matrix",
    "top_consensus",
]
