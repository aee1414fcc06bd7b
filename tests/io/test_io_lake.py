"""Lakes on local disk and on S3 (moto's server over HTTP, through s3fs): Parquet with
column pruning, row-group filters and hive partition pruning, CSV, JSON lines; results
written to S3 with the job's atomic sink."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import adp
from adp.io.lake import read_lake


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )


def _write_hive(fs, root: str, df: pd.DataFrame, open_=open) -> None:
    """site=a|b / date=2026-11-01|02 folders, two row groups per file."""
    for i, (site, date) in enumerate(
        [(s, d) for s in ("a", "b") for d in ("2026-11-01", "2026-11-02")]
    ):
        part = df.iloc[i::4]
        folder = f"{root}/site={site}/date={date}"
        fs.makedirs(folder, exist_ok=True)
        with fs.open(f"{folder}/part.parquet", "wb") as f:
            part.to_parquet(f, index=False, row_group_size=max(1, len(part) // 2))


@pytest.fixture
def local_lake(tmp_path):
    import fsspec

    df = _frame()
    root = str(tmp_path / "lake")
    _write_hive(fsspec.filesystem("file"), root, df)
    return root, df


def test_local_parquet_reads_every_row_on_the_cluster(client, local_lake):
    root, df = local_lake
    ddf = adp.read(root)
    assert ddf.npartitions >= 4
    out = ddf.compute().sort_values("id")
    assert len(out) == len(df)
    np.testing.assert_allclose(out["x"].to_numpy(), df["x"].to_numpy())
    assert set(out["site"].astype(str)) == {"a", "b"}


def test_column_pruning_reads_only_the_named_columns(client, local_lake):
    root, _ = local_lake
    ddf = adp.read(root, columns=["id", "x"])
    assert list(ddf.columns) == ["id", "x"]
    assert list(ddf.compute().columns) == ["id", "x"]


def test_hive_partition_pruning_and_row_group_filters(client, local_lake):
    root, df = local_lake
    pruned = adp.read(root, filters=[("site", "==", "a"), ("date", "==", "2026-11-02")])
    assert pruned.npartitions < adp.read(root).npartitions
    out = pruned.compute()
    assert len(out) == len(df.iloc[1::4])
    assert set(out["site"].astype(str)) == {"a"}
    rows = adp.read(root, filters=[("id", "<", 50)]).compute()
    assert len(rows) == 50 and rows["id"].max() == 49


def test_hive_pruning_skips_files_before_the_footer_check(client, local_lake, tmp_path):
    root, _ = local_lake
    corrupt = f"{root}/site=c/date=2026-11-01"
    import os

    os.makedirs(corrupt)
    with open(f"{corrupt}/part.parquet", "wb") as f:
        f.write(b"PAR1 not a parquet file")
    out = adp.read(root, filters=[("site", "in", ["a", "b"])]).compute()
    assert len(out) == 400


def test_csv_and_json_lines(client, tmp_path):
    df = _frame(300)
    (tmp_path / "csv").mkdir()
    (tmp_path / "json").mkdir()
    for i in range(3):
        df.iloc[i * 100 : (i + 1) * 100].to_csv(tmp_path / "csv" / f"p{i}.csv", index=False)
        df.iloc[i * 100 : (i + 1) * 100].to_json(
            tmp_path / "json" / f"p{i}.jsonl", orient="records", lines=True
        )
    for uri in (str(tmp_path / "csv"), str(tmp_path / "json" / "*.jsonl")):
        ddf = adp.read(uri)
        assert ddf.npartitions == 3
        out = ddf.compute().sort_values("id")
        np.testing.assert_allclose(out["y"].to_numpy(), df["y"].to_numpy())
    assert list(adp.read(str(tmp_path / "json"), columns=["x"]).columns) == ["x"]


def test_s3_parquet_with_pruning_through_s3fs(client, s3):
    bucket = s3.bucket()
    df = _frame()
    _write_hive(s3.fs(), f"{bucket}/lake", df)
    uri = f"s3://{bucket}/lake/"
    ddf = adp.read(uri, storage_options=s3.storage_options)
    assert len(ddf.compute()) == len(df)
    pruned = adp.read(
        uri,
        columns=["id", "x", "site"],
        filters=[("site", "==", "b")],
        storage_options=s3.storage_options,
    ).compute()
    assert set(pruned["site"].astype(str)) == {"b"}
    assert len(pruned) == len(df) // 2
    assert "y" not in pruned.columns


def test_s3_csv_and_json_lines(client, s3):
    bucket = s3.bucket()
    df = _frame(200)
    fs = s3.fs()
    with fs.open(f"{bucket}/csv/a.csv", "w") as f:
        df.to_csv(f, index=False)
    with fs.open(f"{bucket}/json/a.jsonl", "w") as f:
        df.to_json(f, orient="records", lines=True)
    for uri in (f"s3://{bucket}/csv/", f"s3://{bucket}/json/a.jsonl"):
        out = adp.read(uri, storage_options=s3.storage_options).compute().sort_values("id")
        np.testing.assert_allclose(out["z"].to_numpy(), df["z"].to_numpy())


@pytest.mark.slow
def test_a_scored_frame_is_written_to_s3_with_the_atomic_sink(client, s3):
    from adp.io.sinks import MANIFEST, Staging, manifest_for, write_partitions

    bucket = s3.bucket()
    df = _frame()
    source = f"s3://{bucket}/in/"
    with s3.fs().open(f"{bucket}/in/a.parquet", "wb") as f:
        df.to_parquet(f, index=False)
    ddf = adp.read(source, storage_options=s3.storage_options).repartition(npartitions=3)
    det = adp.create_detector("hbos", contamination=0.05).fit(ddf, key=["id"])
    scored = det.detect(ddf, key=["id"])
    target = f"s3://{bucket}/out/scores"
    staging = Staging(target, "error", s3.storage_options)
    with staging.session():
        data = staging.path("data")
        written = list(
            __import__("dask").compute(*write_partitions(scored, data, s3.storage_options))
        )
        staging.commit(data, manifest_for(written))
    fs = s3.fs()
    assert fs.exists(f"{bucket}/out/scores/{MANIFEST}")
    assert not [p for p in fs.ls(bucket) if "staging" in p]
    back = adp.read(target, storage_options=s3.storage_options).compute()
    assert sorted(back["id"]) == list(range(len(df)))
    assert back["is_anomaly"].sum() == pytest.approx(0.05 * len(df), abs=3)


def test_read_lake_keeps_its_signature_for_format_and_columns(client, local_lake):
    root, _ = local_lake
    ddf = read_lake(root, "parquet", ["x"], validate=False)
    assert list(ddf.columns) == ["x"]
