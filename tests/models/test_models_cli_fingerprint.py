"""``adp models`` and the training-data fingerprints."""

from __future__ import annotations

import json
import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner


def test_models_cli_list_show_promote(tmp_path, fitted):
    from adp.models.api import ModelRegistry
    from adp.models.cli import models

    url, store = f"sqlite:///{tmp_path / 'cli.db'}", str(tmp_path / "store")
    registry = ModelRegistry(url, store)
    registry.register(fitted, "cli-model", metrics={"metric": "roc_auc", "score": 0.9})
    registry.register(fitted, "cli-model")
    runner = CliRunner()
    opts = ["--url", url, "--store", store]

    listed = runner.invoke(models, ["list", "--json", *opts])
    assert listed.exit_code == 0, listed.output
    refs = [
        json.loads(line)["name"] + "@" + str(json.loads(line)["version"])
        for line in listed.output.splitlines()
    ]
    assert refs == ["cli-model@1", "cli-model@2"]

    table = runner.invoke(models, ["list", *opts])
    assert table.exit_code == 0, table.output
    assert "cli-model@1" in table.output and "0.9000" in table.output

    shown = runner.invoke(models, ["show", "cli-model@1", "--json", *opts])
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert record["version"] == 1 and record["detector"] == "isolation_forest"
    assert record["sha256"] == registry.info("cli-model", 1).sha256

    promoted = runner.invoke(models, ["promote", "cli-model@2", "production", *opts])
    assert promoted.exit_code == 0 and "cli-model@2 is now in production" in promoted.output
    assert registry.info("cli-model", "production").version == 2

    missing = runner.invoke(models, ["show", "nothing@3", *opts])
    assert missing.exit_code == 1 and "no model named 'nothing'" in missing.output


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.integers(0, 9, size=n)})


def test_frame_fingerprint_is_stable_and_sees_changes(client):
    from adp.models.fingerprint import fingerprint_frame

    frame = _frame()
    base = fingerprint_frame(dd.from_pandas(frame, npartitions=4))
    assert base.startswith("frame-sha256:") and len(base) == len("frame-sha256:") + 64
    assert fingerprint_frame(dd.from_pandas(frame.copy(), npartitions=4)) == base

    edited = frame.copy()
    edited.iloc[0, 0] += 1.0  # the first row of the first partition is always hashed
    assert fingerprint_frame(dd.from_pandas(edited, npartitions=4)) != base
    appended = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    assert fingerprint_frame(dd.from_pandas(appended, npartitions=4)) != base
    retyped = frame.astype({"y": "float64"})
    assert fingerprint_frame(dd.from_pandas(retyped, npartitions=4)) != base


def test_file_fingerprint_uses_the_listing(tmp_path):
    from adp.models.fingerprint import fingerprint_files, fingerprint_source

    lake = tmp_path / "lake"
    lake.mkdir()
    for i in range(2):
        _frame().to_parquet(lake / f"part.{i}.parquet")
    base = fingerprint_files(str(lake))
    assert base.startswith("files-sha256:")
    assert fingerprint_files(str(lake)) == base
    assert fingerprint_source(str(lake)) == base

    target = lake / "part.1.parquet"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = fingerprint_files(str(lake))
    assert touched != base
    (lake / "part.2.parquet").write_bytes(target.read_bytes())
    assert fingerprint_files(str(lake)) not in (base, touched)


def test_fingerprint_errors_name_the_source(tmp_path):
    from adp.errors import ConfigError, SourceError
    from adp.models.fingerprint import fingerprint_source

    missing = str(tmp_path / "nowhere")
    with pytest.raises(SourceError, match=r"cannot fingerprint .*nowhere.*nothing exists"):
        fingerprint_source(missing)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(ConfigError, match=r"cannot fingerprint 'sqlite:.*without its data frame"):
        fingerprint_source(url)
