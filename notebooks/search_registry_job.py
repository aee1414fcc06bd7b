# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Search -> registry -> job
# Let the cluster try several detectors and parameters against labelled data, register
# the winner in the model registry, and score a lake with a batch job that names the
# registered model instead of fitting one.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: the Dask scheduler's address (default: what `adp.connect()` picks:
#   `DASK_SCHEDULER_ADDRESS`, else a new local cluster)
# - `ADP_DATA_DIR`: where the demo lake and the job's output are written (default
#   `data/notebooks`)
# - `DASK_ADP__STATE_DIR`: ADP's state, which holds the model registry (`adp.models.url`,
#   `adp.models.store`) and the audit trail (default `~/.local/share/adp`)

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import adp
from adp.jobs.demo_lake import generate

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute()
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)
lake = generate(data_dir / "search-lake", sensors=8, days=2, seed=11)
ddf = adp.read(str(lake.path))
features = ["temperature", "pressure", "vibration", "current"]
print(f"lake: {lake.rows:,} rows, {lake.injected} labelled anomalies (is_injected)")

# %% [markdown]
# ## Search
# One uniform sample is placed on every worker; each candidate is one task, judged by
# average precision on 3 held-out folds of the labels. The space names detectors and the
# values to draw their parameters from (lists, or scipy distributions); `max_trials` is
# shared evenly among the detectors, and `time_budget` keeps what finished in time and
# cancels the rest.

# %%
space = {
    "isolation_forest": {"n_estimators": [50, 100], "max_samples": [128, 256]},
    "hbos": {"n_bins": [10, 20, 50]},
    "knn": {"n_neighbors": [5, 10, 20]},
}
result = adp.search(
    ddf,
    space=space,
    label="is_injected",
    metric="average_precision",
    max_trials=6,
    cv=3,
    time_budget=120,
    sample_rows=4_000,
    random_state=0,
    features=features,
    contamination=0.03,
)
board = result.leaderboard
assert len(board) == 6 and (board["status"] == "ok").all(), board[["detector", "status", "error"]]
assert board["score"].is_monotonic_decreasing  # best first
print(
    f"{len(board)} trials on {result.engine}; best {result.best['detector']} "
    f"(average precision {result.best_score:.3f})"
)
board[["detector", "params", "score", "score_std", "fit_seconds"]]

# %%
labels = [f"{row.detector} #{row.trial}" for row in board.itertuples()]
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(labels[::-1], board["score"][::-1], xerr=board["score_std"][::-1], color="steelblue")
ax.set_xlabel("average precision (3-fold)")
ax.set_title("search leaderboard")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Register the winner
# The refitted winner is stored with its parameters, features, the search's figures, the
# library versions and the training data's fingerprint. Loading it later checks the
# artifact's SHA-256 before anything is deserialized.

# %%
version = result.register(
    "notebook-sensors",
    source=str(lake.path),
    fingerprint=adp.models.fingerprint_files(str(lake.path)),
)
registered = pd.DataFrame([v.to_dict() for v in adp.models.list("notebook-sensors")])
assert version.version in set(registered["version"])
assert version.detector == result.best["detector"] and version.features == features
assert version.metrics["score"] == result.best_score
print(f"registered {version.ref}: {version.detector}, sha256 {version.sha256[:12]}...")
registered[["name", "version", "detector", "stage", "created_at"]].tail()

# %% [markdown]
# ## A batch job with the registered model
# `detector: {model: NAME@VERSION}` scores with the stored model: no fit. The job writes
# its output atomically and, with `evaluate`, counts precision and recall against the
# labels.

# %%
spec = adp.JobSpec.from_dict(
    {
        "name": "score-with-registered-model",
        "source": {"uri": str(lake.path), "key": ["sensor_id", "ts"]},
        "detector": {"model": version.ref},
        "threshold": {"contamination": 0.03},
        "output": {"uri": str(data_dir / "search-scores"), "mode": "overwrite"},
        "evaluate": {"label": "is_injected", "kind": "anomaly_kind"},
    }
)
job = adp.run_job(spec, client=client, show_progress=False)
assert job.rows == lake.rows and job.detector == version.detector
scores = adp.read(str(data_dir / "search-scores")).compute()
assert len(scores) == lake.rows and int(scores["is_anomaly"].sum()) == job.anomalies
print(
    f"job: {job.rows:,} rows scored with {version.ref}, {job.anomalies} flagged, "
    f"precision {job.evaluation.precision:.3f}, recall {job.evaluation.recall:.3f}"
)

# %%
client.close()
