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
# # SQL and S3 sources
# Score a PostgreSQL table in parallel (each partition a bounded `WHERE` range read on a
# worker), write the scores back into the database idempotently, score the same rows from
# a Parquet lake on S3 with the same model, and run a batch job from S3 to S3 with an
# atomic, manifest-committed output.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: the Dask scheduler's address (default: what `adp.connect()` picks:
#   `DASK_SCHEDULER_ADDRESS`, else a new local cluster)
# - `ADP_PG_URL`: a PostgreSQL database ADP may create tables in (default
#   `postgresql+psycopg://postgres@127.0.0.1:5432/test`)
# - `ADP_SQL_TABLE`: the table written here; scores go to `<table>_scores` (default
#   `adp_notebook_metrics`)
# - `ADP_S3_ENDPOINT`: an S3 endpoint (default `http://127.0.0.1:5000`, where `moto_server`
#   listens: `pip install 'moto[server]'` and run `moto_server` for a local S3)
# - `ADP_S3_BUCKET`: the bucket, created when missing (default `adp-notebook`)
# - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: S3 credentials (default `x`, which moto
#   accepts)

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import s3fs
import sqlalchemy as sa

import adp
from adp.io.sql import write_table

pg_url = os.environ.get("ADP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
table = os.environ.get("ADP_SQL_TABLE", "adp_notebook_metrics")
bucket = os.environ.get("ADP_S3_BUCKET", "adp-notebook")
storage_options = {
    "key": os.environ.get("AWS_ACCESS_KEY_ID", "x"),
    "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", "x"),
    "client_kwargs": {"endpoint_url": os.environ.get("ADP_S3_ENDPOINT", "http://127.0.0.1:5000")},
}
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)

# %% [markdown]
# ## Some host metrics, in a database table
# Three hosts report CPU, memory and I/O; 1% of the readings are injected outliers.

# %%
rng = np.random.default_rng(3)
rows = 6_000
metrics = pd.DataFrame(
    {
        "id": np.arange(rows, dtype=np.int64),
        "host": rng.choice(["a", "b", "c"], size=rows),
        "cpu": rng.normal(40, 8, rows),
        "mem": rng.normal(60, 5, rows),
        "io": rng.gamma(2.0, 3.0, rows),
    }
)
metrics["injected"] = rng.random(rows) < 0.01
metrics.loc[metrics["injected"], ["cpu", "io"]] += [45, 40]
engine = sa.create_engine(pg_url)
metrics.to_sql(table, engine, if_exists="replace", index=False)
print(f"wrote {rows:,} rows to table {table}")

# %% [markdown]
# ## Read, fit, detect, write back
# `index_col` is the column partitions are cut on (and the index of the frame); the table
# is reflected, never pasted into SQL. `write_table(..., mode="upsert")` stages every
# partition on a worker and merges them on the key in one transaction: running it twice
# neither duplicates nor loses a row.

# %%
features = ["cpu", "mem", "io"]
ddf = adp.read(pg_url, table=table, index_col="id", npartitions=4)
assert ddf.npartitions == 4
detector = adp.create_detector("isolation_forest", contamination=0.01, random_state=0)
detector.fit(ddf, features=features, random_state=0)
scored = detector.detect(ddf, key=["host"])
scores_table = f"{table}_scores"
for _ in range(2):
    written = write_table(scored, pg_url, scores_table, key=["id"], mode="upsert")
with engine.connect() as conn:
    written_table = sa.Table(scores_table, sa.MetaData(), autoload_with=conn)  # reflected
    stored = pd.read_sql(sa.select(written_table).order_by(written_table.c.id), conn)
assert written == rows and len(stored) == rows and stored["id"].is_unique
flagged_sql = int(stored["is_anomaly"].sum())
assert flagged_sql >= rows // 100  # the top 1% of all rows (more only on ties)
print(f"{len(stored):,} rows in {scores_table} after two upserts, {flagged_sql} flagged")

# %% [markdown]
# ## The same rows from a lake on S3
# The same fitted model scores the rows from Parquet files on S3: a row's score depends
# only on the model and the row, not on where it was read from or how it was partitioned.

# %%
fs = s3fs.S3FileSystem(**storage_options)
if not fs.exists(bucket):
    fs.mkdir(bucket)
for host, part in metrics.groupby("host"):
    part.to_parquet(
        f"s3://{bucket}/metrics/host-{host}.parquet", index=False, storage_options=storage_options
    )
lake = adp.read(f"s3://{bucket}/metrics/", storage_options=storage_options)
from_s3 = detector.detect(lake, key=["id"]).compute()
both = stored.merge(from_s3, on="id", suffixes=("_sql", "_s3"), validate="one_to_one")
assert len(both) == rows and lake.npartitions == 3
np.testing.assert_allclose(both["score_sql"], both["score_s3"], rtol=0, atol=1e-12)
print(f"{len(from_s3):,} rows from {lake.npartitions} S3 files: scores equal to the SQL run's")

# %% [markdown]
# ## A batch job from S3 to S3
# The job stages its scores beside the output and commits them with one PUT of a
# manifest; `adp.read` of the output reads exactly the files the manifest names.

# %%
output = f"s3://{bucket}/scores/"
spec = adp.JobSpec.from_dict(
    {
        "name": "s3-metrics",
        "source": {
            "uri": f"s3://{bucket}/metrics/",
            "features": features,
            "key": ["id"],
            "storage_options": storage_options,
        },
        "detector": {"name": "isolation_forest", "params": {"random_state": 0}},
        "threshold": {"contamination": 0.01},
        "output": {"uri": output, "mode": "overwrite", "storage_options": storage_options},
        "evaluate": {"label": "injected"},
    }
)
job = adp.run_job(spec, client=client, show_progress=False)
manifest = json.loads(fs.cat(f"{bucket}/scores/_adp_manifest.json"))
job_scores = adp.read(output, storage_options=storage_options).compute()
assert job.rows == rows == len(job_scores) == manifest["rows"]
print(
    f"job: {job.rows:,} rows, {job.anomalies} flagged, recall {job.evaluation.recall:.3f}; "
    f"manifest lists {len(manifest['files'])} files"
)

# %%
view = metrics.merge(stored[["id", "score", "is_anomaly"]], on="id")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
normal, hits = view[~view["is_anomaly"]], view[view["is_anomaly"]]
left.scatter(normal["cpu"], normal["io"], s=3, c="grey", alpha=0.4, label="normal")
left.scatter(hits["cpu"], hits["io"], s=12, c="red", label="flagged")
left.set_xlabel("cpu")
left.set_ylabel("io")
left.legend()
for host, part in view.groupby("host"):
    right.hist(part["score"], bins=50, histtype="step", label=f"host {host}")
right.set_xlabel("isolation forest score")
right.legend()
fig.tight_layout()
plt.show()

# %%
engine.dispose()
client.close()
