"""``adp bench feedback``: does analysts' feedback pay? A simulated analyst on the ODDS sets.

For each dataset (``../shared/data/odds``, Parquet with a ``label`` column) ADP fits an
unsupervised ensemble (:data:`DEFAULT_MEMBERS`, contamination 0.1: the analyst does not know
the anomaly rate) on every row, partitioned, keyed by row number. Then, for each review
strategy, a simulated analyst labels rounds of ``batch`` rows (20) until ``share`` of the rows
(1%), and at least ``min_labels`` (100), carry a label; the analyst answers from the
``label`` column. Each round runs what a user runs:

1. :func:`adp.feedback.next_rows` picks the batch from the current model's scored rows
   (``top``, ``uncertain``, ``disagreement``, ``diverse``, or ``random`` as the control);
2. the answers go into a :class:`~adp.feedback.labels.LabelStore` (audited, in a scratch
   state directory, so a benchmark never writes to the user's audit trail);
3. a :class:`~adp.feedback.detectors.SemiSupervisedDetector` learns from every label so far
   (:func:`adp.feedback.with_labels` matches them by key on the workers) and scores every
   row, partition-parallel. Until the labels hold both classes the model stays the parent.

After each round: average precision (AP) and precision at the true anomaly count of the
learned model, of the unsupervised start and of the best single member (the best
unsupervised detector, chosen with hindsight), all on the rows not labelled so far (a
labelled row's answer is known; scoring it says nothing). After the last round the
ensemble's learned member weights (:class:`~adp.feedback.detectors.WeightedEnsembleDetector`)
are scored the same way (``ap_weights``).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.accuracy import available_datasets, default_odds_dir, load_dataset
from adp.bench.measure import cluster, timed
from adp.clitools import fail_cleanly

#: The ensemble's members (the candidates for "best single unsupervised detector"). k-NN and
#: LOF are left out: a learned model scores its parent's members on every row each round,
#: and on shuttle (49k rows) their neighbour searches made a round take minutes; on these
#: datasets neither was ever the best member (PyOD's scores of all rows, November 2026).
DEFAULT_MEMBERS = ("isolation_forest", "hbos", "ecod", "copod")
STRATEGIES = ("random", "top", "uncertain", "disagreement", "diverse")
_ANALYST = "simulated-analyst"


def _ap(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if y.sum() == 0:
        return float("nan")
    finite = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    top = finite[np.isfinite(finite)]
    high = top.max() + 1 if top.size else 1.0
    low = top.min() - 1 if top.size else -1.0
    return float(average_precision_score(y, np.nan_to_num(finite, posinf=high, neginf=low)))


def _precision_at_n(y: np.ndarray, scores: np.ndarray) -> float:
    n = int(y.sum())
    if n == 0:
        return float("nan")
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:n]
    return float(y[order].mean())


def label_budget(rows: int, share: float, min_labels: int) -> int:
    """Labels the simulation gathers: ``share`` of the rows, at least ``min_labels`` (at
    most every row)."""
    return int(min(rows, max(min_labels, math.ceil(share * rows))))


def _frame(X: np.ndarray, y: np.ndarray, npartitions: int) -> Any:
    import dask.dataframe as dd

    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    frame.insert(0, "row", np.arange(len(frame), dtype=np.int64))
    return dd.from_pandas(frame, npartitions=npartitions, sort=True).persist()


def _scores(detector: Any, ddf: Any) -> np.ndarray:
    scored = detector.decision_function(ddf).compute().sort_index()
    return np.asarray(scored.to_numpy(), dtype=np.float64)


def _scored(detector: Any, ddf: Any) -> tuple[Any, np.ndarray]:
    """The detector's flagged rows as the review queue reads them (scored once, kept in
    the cluster's memory) and every row's score, in row order."""
    from adp.detect.detection import raw_scores
    from adp.detect.threshold import FixedScore, flag
    from adp.feedback.outputs import scored_frame

    raw = raw_scores(detector, detector.prepare(ddf), key=["row"]).persist()
    rule = detector.threshold_rule(None)
    if isinstance(rule, FixedScore):  # no round trip to the cluster for a known number
        threshold = float(rule.value)
    else:
        threshold = float(rule.resolve(raw["score"]).compute())
    frame = flag(raw, threshold).persist()
    scores = frame[["row", "score"]].compute().sort_values("row")["score"].to_numpy()
    return scored_frame(frame, threshold), np.asarray(scores, dtype=np.float64)


def _member_scores(parent: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """Each member's raw scores of every row (the fitted scorers score rows independently,
    so this is what scoring the partitions gives)."""
    names = [m.name for m in parent.members_]
    scorers = parent.scorer_.scorers
    return {
        name: np.asarray(s.decision_function(X), dtype=np.float64)
        for name, s in zip(names, scorers, strict=True)
    }


def _evaluate(
    y: np.ndarray,
    labelled: np.ndarray,
    scores: np.ndarray,
    start: np.ndarray,
    members: dict[str, np.ndarray],
) -> dict[str, Any]:
    keep = ~labelled
    truth = y[keep]
    best_name, best_ap = "", float("-inf")
    for name, member in members.items():
        value = _ap(truth, member[keep])
        if value > best_ap:
            best_name, best_ap = name, value
    return {
        "ap": _ap(truth, scores[keep]),
        "p_at_n": _precision_at_n(truth, scores[keep]),
        "ap_start": _ap(truth, start[keep]),
        "p_at_n_start": _precision_at_n(truth, start[keep]),
        "ap_best_single": best_ap,
        "best_single": best_name,
    }


def _simulate(
    dataset: str,
    strategy: str,
    ddf: Any,
    X: np.ndarray,
    y: np.ndarray,
    parent: Any,
    members: dict[str, np.ndarray],
    start: tuple[Any, np.ndarray],
    store: Any,
    *,
    batch: int,
    budget: int,
    max_rounds: int | None,
    random_state: int,
) -> list[dict[str, Any]]:
    """The rounds of one strategy on one dataset."""
    from adp.feedback import (
        SemiSupervisedDetector,
        WeightedEnsembleDetector,
        next_rows,
        with_labels,
    )

    model = f"{dataset}-{strategy}"
    labelled = np.zeros(len(y), dtype=bool)
    scored, scores = start  # the parent's, shared by every strategy
    start_scores = scores
    current, learned = parent, False
    rows = [
        {
            "round": 0,
            "labels": 0,
            "anomalies_labelled": 0,
            "learned": False,
            "seconds": 0.0,
            **_evaluate(y, labelled, scores, start_scores, members),
        }
    ]
    round_number = 0
    while labelled.sum() < budget and (max_rounds is None or round_number < max_rounds):
        round_number += 1
        with timed() as timer:
            want = int(min(batch, budget - labelled.sum()))
            picked = next_rows(
                scored,
                want,
                strategy,
                model=model,
                store=store,
                detector=parent,
                source=ddf,
                seed=random_state + round_number,
            )
            if picked.empty:
                break
            ids = picked["row"].to_numpy(np.int64)
            answers = ["anomaly" if y[i] else "normal" for i in ids]
            store.add_many(model, list(zip(picked["row_key"], answers, strict=True)), who=_ANALYST)
            labelled[ids] = True
            labels = store.labels(model)
            known = y[labelled]
            if 0 < known.sum() < known.size:
                current = SemiSupervisedDetector(
                    parent, contamination=parent.contamination, random_state=random_state
                ).fit(with_labels(ddf, labels))
                learned = True
                scored, scores = _scored(current, ddf)
        row = {
            "round": round_number,
            "labels": int(labelled.sum()),
            "anomalies_labelled": int(y[labelled].sum()),
            "learned": learned,
            "seconds": timer.seconds,
            **_evaluate(y, labelled, scores, start_scores, members),
        }
        rows.append(row)
    final = rows[-1]
    known = y[labelled]
    if 0 < known.sum() < known.size:
        weighted = WeightedEnsembleDetector(parent, contamination=parent.contamination).fit(
            with_labels(ddf, store.labels(model))
        )
        final["ap_weights"] = _ap(y[~labelled], _scores(weighted, ddf)[~labelled])
    for row in rows:
        row.update(dataset=dataset, strategy=strategy, rows=len(y), anomalies=int(y.sum()))
    return rows


def bench_feedback(
    datasets: Sequence[str] | None = None,
    strategies: Sequence[str] | None = None,
    client: Any = None,
    *,
    odds_dir: Path | None = None,
    members: Sequence[str] = DEFAULT_MEMBERS,
    npartitions: int = 4,
    batch: int = 20,
    share: float = 0.01,
    min_labels: int = 100,
    max_rounds: int | None = None,
    random_state: int = 0,
    on_dataset: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame:
    """Simulate analysts' feedback on the ODDS datasets, round by round.

    Parameters
    ----------
    datasets : sequence of str, optional
        Dataset names (default every one in ``MANIFEST.csv``).
    strategies : sequence of str, optional
        Review strategies (default :data:`STRATEGIES`; ``random`` is the control).
    client : distributed.Client, optional
        Default a LocalCluster of 2 worker processes, closed after.
    odds_dir : Path, optional
        Default ``../shared/data/odds``.
    members : sequence of str
        The unsupervised ensemble's members.
    npartitions : int
        Partitions of each dataset.
    batch : int
        Labels per round.
    share, min_labels : float, int
        The label budget: ``share`` of the rows, at least ``min_labels``.
    max_rounds : int, optional
        Stop after this many rounds (tests).
    random_state : int
    on_dataset : callable, optional
        Called with the rows so far after each dataset (a long run keeps what it found).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, strategy, round); round 0 is the unsupervised start. Columns
        ``labels``, ``anomalies_labelled``, ``learned``, ``ap``, ``p_at_n``, ``ap_start``,
        ``p_at_n_start``, ``ap_best_single``, ``best_single``, ``seconds`` and, on each
        strategy's last round, ``ap_weights``.
    """
    import dask.config

    from adp.detect.detector import create_detector
    from adp.feedback.labels import LabelStore
    from adp.feedback.strategies import check_strategy

    odds_dir = Path(odds_dir) if odds_dir is not None else default_odds_dir()
    names = list(datasets or available_datasets(odds_dir))
    chosen = [check_strategy(s) for s in (strategies or STRATEGIES)]
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="adp-bench-feedback-") as scratch,
        dask.config.set(
            {"adp.state-dir": scratch, "adp.feedback.url": None, "adp.audit.url": None}
        ),
        cluster(client, reuse_configured=True),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        store = LabelStore(f"sqlite:///{Path(scratch) / 'labels.db'}")
        try:
            for dataset in names:
                X, y = load_dataset(odds_dir, dataset)
                ddf = _frame(X, y, npartitions)
                parent = create_detector(
                    "ensemble",
                    detectors=list(members),
                    contamination=0.1,
                    random_state=random_state,
                ).fit(ddf, key=["row"], sample_rows=len(y), random_state=random_state)
                start = _scored(parent, ddf)
                member_scores = _member_scores(parent, X)
                budget = label_budget(len(y), share, min_labels)
                for strategy in chosen:
                    rows += _simulate(
                        dataset,
                        strategy,
                        ddf,
                        X,
                        y,
                        parent,
                        member_scores,
                        start,
                        store,
                        batch=batch,
                        budget=budget,
                        max_rounds=max_rounds,
                        random_state=random_state,
                    )
                if on_dataset is not None:
                    on_dataset(pd.DataFrame(rows))
        finally:
            store.close()
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """The last round of each (dataset, strategy): the figures the issue's targets name."""
    last = frame.groupby(["dataset", "strategy"], sort=False).tail(1)
    out = last[
        [
            "dataset",
            "strategy",
            "labels",
            "anomalies_labelled",
            "learned",
            "ap",
            "ap_start",
            "ap_best_single",
            "best_single",
            "p_at_n",
            "p_at_n_start",
        ]
        + (["ap_weights"] if "ap_weights" in last else [])
    ].copy()
    out["beats_best"] = out["ap"] > out["ap_best_single"]
    return out.reset_index(drop=True)


def verdicts(frame: pd.DataFrame) -> list[str]:
    """One line per target: datasets where the learned AP beats the best single detector
    (per strategy), and where ``uncertain`` / ``disagreement`` beat ``random``."""
    final = summary(frame)
    lines = []
    datasets = final["dataset"].nunique()
    for strategy, group in final.groupby("strategy", sort=False):
        wins = int(group["beats_best"].sum())
        lines.append(
            f"{strategy}: learned AP beats the best single unsupervised detector on "
            f"{wins}/{len(group)} datasets"
        )
    by = final.pivot(index="dataset", columns="strategy", values="ap")
    if "random" in by:
        for strategy in ("uncertain", "disagreement", "top", "diverse"):
            if strategy in by:
                wins = int((by[strategy] > by["random"]).sum())
                lines.append(f"{strategy} beats random on {wins}/{datasets} datasets")
    return lines


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, float):
            return "-" if np.isnan(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


@click.command("feedback")
@click.option("--datasets", default=None, help="Comma-separated names (default: all).")
@click.option("--strategies", default=None, help="Comma-separated (default: all five).")
@click.option("--odds-dir", default=None, type=click.Path(path_type=Path, file_okay=False))
@click.option("--partitions", default=4, show_default=True, help="Partitions per dataset.")
@click.option("--batch", default=20, show_default=True, help="Labels per round.")
@click.option("--share", default=0.01, show_default=True, help="Share of rows labelled in all.")
@click.option("--min-labels", default=100, show_default=True, help="At least this many labels.")
@click.option("--max-rounds", default=None, type=int, help="Stop after this many rounds.")
@click.option("--rounds", "show_rounds", is_flag=True, help="Print every round, not only the last.")
@click.option("--json", "as_json", is_flag=True, help="Print every round as JSON records.")
@click.option(
    "--save",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every round to this CSV file, after each dataset.",
)
@fail_cleanly
def feedback(
    datasets: str | None,
    strategies: str | None,
    odds_dir: Path | None,
    partitions: int,
    batch: int,
    share: float,
    min_labels: int,
    max_rounds: int | None,
    show_rounds: bool,
    as_json: bool,
    save: Path | None,
) -> None:
    """Simulated analysts' feedback on the ODDS sets: AP and precision@n per round."""
    frame = bench_feedback(
        datasets.split(",") if datasets else None,
        strategies.split(",") if strategies else None,
        odds_dir=odds_dir,
        npartitions=partitions,
        batch=batch,
        share=share,
        min_labels=min_labels,
        max_rounds=max_rounds,
        on_dataset=(lambda rows: rows.to_csv(save, index=False)) if save else None,
    )
    if as_json:
        click.echo(json.dumps(frame.to_dict(orient="records"), default=float))
        return
    if show_rounds:
        columns = [
            "dataset",
            "strategy",
            "round",
            "labels",
            "anomalies_labelled",
            "ap",
            "p_at_n",
            "ap_start",
            "ap_best_single",
            "seconds",
        ]
        click.echo(_markdown(frame[columns]) + "\n")
    click.echo(_markdown(summary(frame)))
    click.echo("\n" + "\n".join(verdicts(frame)))
