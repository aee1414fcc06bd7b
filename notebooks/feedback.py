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
# # Analyst feedback: review, label, learn
# An unsupervised detector flags what looks unusual; an analyst knows what matters. This
# notebook scores the demo lake with an ensemble, asks the review queue for the rows most
# worth an analyst's time, answers them (here a simulated analyst reads the lake's
# `is_injected` column), and learns two new model versions from the answers: a threshold
# recalibrated to a target precision, and a semi-supervised scorer. Both are registered
# with their lineage, and compared with the start on the rows nobody labelled.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: a scheduler address (default: a local cluster of worker processes)
# - `ADP_DATA_DIR`: where the lake, the label store and the registry are written
#   (default `data/notebooks`; this notebook's folder `feedback/` in it starts afresh)

# %%
import os
import shutil
from pathlib import Path

import dask
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

import adp
from adp.detect.detection import run_detection
from adp.feedback import LabelStore, label_set_sha256, learn, next_rows, scored_frame
from adp.feedback.keys import key_texts
from adp.jobs.demo_lake import generate
from adp.models.api import ModelRegistry

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute()
work = data_dir / "feedback"
shutil.rmtree(work, ignore_errors=True)  # this notebook's own scratch folder
lake = generate(work / "lake", sensors=5, days=2, seed=11)
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)
registry = ModelRegistry(f"sqlite:///{work / 'models.db'}", str(work / "models"))
store = LabelStore(f"sqlite:///{work / 'labels.db'}")
key = ["sensor_id", "ts"]
features = ["temperature", "pressure", "vibration", "current"]
ddf = adp.read(str(lake.path))  # the ground truth columns ride along, unused by the models
truth = ddf[[*key, "is_injected"]].compute()
print(f"{lake.rows:,} rows, {lake.injected} injected anomalies, {ddf.npartitions} partitions")

# %% [markdown]
# ## Score
# An ensemble of HBOS and an isolation forest, registered as version 1; every row scored
# with the exact global threshold and explained by its two most contributing features.

# %%
ensemble = adp.create_detector(
    "ensemble",
    detectors=["hbos", {"name": "isolation_forest", "params": {"n_estimators": 50}}],
    contamination=0.03,
    random_state=0,
).fit(ddf, features=features, key=key, random_state=0)
parent = registry.register(ensemble, "feedback-sensors").ref
detection = run_detection(ensemble, ddf, key=key, explain=2)
(threshold,) = dask.compute(detection.threshold)
scored = scored_frame(detection.frame.persist(), float(threshold))
start = scored.frame.compute().merge(truth, on=key)
print(
    f"registered {parent}; threshold {float(threshold):.4g}, {int(start.is_anomaly.sum())} flagged"
)

# %% [markdown]
# ## Review
# `uncertain` offers the rows scored closest to the threshold. Each comes with its score,
# `top_features`, its feature values and, since the lake is keyed by (sensor, time), its
# neighbourhood: the same sensor's rows just before and after it.

# %%
batch = next_rows(
    scored,
    5,
    "uncertain",
    model=parent,
    detector=ensemble,
    store=store,
    source=ddf,
    context=2,
    values=True,
)
assert len(batch) == 5 and batch["neighbourhood"].map(len).ge(3).all()
first = batch.iloc[0]
print(f"first row to review: {first.row_key}, score {first.score:.4g}")
pd.DataFrame(first.neighbourhood)[["offset", "ts", "score", "is_anomaly", "values"]]

# %% [markdown]
# ## Label
# A simulated analyst answers four rounds of 20 rows from the ground truth: the `top`
# rows first (mostly anomalies), then three rounds of `uncertain` ones (where the model
# hesitates). Each answer is stored with who gave it (and audited), and answered rows are
# never offered again.

# %%
answers = pd.Series(truth["is_injected"].to_numpy(), index=key_texts(truth, key))
for strategy in ("top", "uncertain", "uncertain", "uncertain"):
    picked = next_rows(scored, 20, strategy, model=parent, store=store)
    store.add_many(
        parent,
        [(k, "anomaly" if answers[k] else "normal") for k in picked.row_key],
        who="notebook-analyst",
    )
counts = store.counts("feedback-sensors")
assert sum(counts.values()) == 80
print(f"80 rows labelled: {counts['anomaly']} anomalies, {counts['normal']} normal")

# %% [markdown]
# ## Learn
# Two new versions of the model, each with its lineage: the parent, the label set's
# SHA-256 and the method.

# %%
recalibrated = learn(parent, ddf, "threshold", store=store, registry=registry, target_precision=0.8)
semi = learn(parent, ddf, "semi_supervised", store=store, registry=registry, random_state=0)
labels = store.labels("feedback-sensors")
for result in (recalibrated, semi):
    version = result.version
    assert version.parent == parent and version.label_sha256 == label_set_sha256(labels)
    print(f"registered {version.ref} ({version.method}) from {version.parent}")

# %% [markdown]
# ## Compare
# Average precision on the rows nobody labelled, before and after learning; and what the
# recalibrated threshold flags: fewer rows, at a higher precision.

# %%
labelled = {lab.row_key for lab in labels}


def unlabelled(rows):
    return rows[~key_texts(rows, key).isin(labelled).to_numpy()]


def evaluated(detector):
    return unlabelled(detector.detect(ddf, key=key).compute().merge(truth, on=key))


curves = {"start": unlabelled(start)}
curves["semi-supervised"] = evaluated(semi.detector)
recal = recalibrated.detector.detect(ddf, key=key).compute().merge(truth, on=key)
ap = {name: average_precision_score(r.is_injected, r.score) for name, r in curves.items()}
print(
    f"average precision on {len(curves['start']):,} unlabelled rows: "
    f"before {ap['start']:.3f}, after {ap['semi-supervised']:.3f}"
)
for name, rows in {"start": start, "recalibrated": recal}.items():
    flagged = rows[rows.is_anomaly]
    print(
        f"{name}: {len(flagged)} rows flagged, precision {flagged.is_injected.mean():.3f}, "
        f"recall {flagged.is_injected.sum() / rows.is_injected.sum():.3f} (all rows)"
    )

fig, ax = plt.subplots(figsize=(6, 4))
for name, rows in curves.items():
    p, r, _ = precision_recall_curve(rows.is_injected, rows.score)
    ax.plot(r, p, label=f"{name} (AP {ap[name]:.3f})")
ax.set_xlabel("recall")
ax.set_ylabel("precision")
ax.legend()
plt.show()

# %%
store.close()
registry.close()
client.close()
