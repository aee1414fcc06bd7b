"""The data-quality score of a profile: each defect lowers its component by its exact share.

(The profile's counts themselves are tested in ``test_io_quality.py``.)
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import adp
from adp.io.profile import ColumnProfile, DataProfile, QualityScore


def _clean(rows: int = 10) -> pd.DataFrame:
    """Four varying, complete, finite columns."""
    i = np.arange(rows, dtype=float)
    return pd.DataFrame({"a": i, "b": i * 2.0, "c": -i, "name": [f"n{k}" for k in range(rows)]})


def _quality(df: pd.DataFrame, npartitions: int = 2) -> QualityScore:
    return adp.profile(dd.from_pandas(df, npartitions=npartitions)).quality


def test_a_clean_frame_scores_one(client):
    q = _quality(_clean())
    assert (q.score, q.completeness, q.finiteness, q.variability, q.consistency) == (
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    )


def test_each_defect_lowers_its_component_by_its_share(client):
    df = _clean()  # 10 rows x 4 columns = 40 cells
    df.loc[[1, 2, 3], "a"] = np.nan  # 3 missing cells of 40
    df.loc[4, "name"] = None  # and 1 more: 4 of 40
    q = _quality(df)
    assert q.completeness == pytest.approx(1 - 4 / 40)
    assert (q.finiteness, q.variability, q.consistency) == (1.0, 1.0, 1.0)
    assert q.score == pytest.approx(0.9)

    df = _clean()
    df.loc[[0, 9], "b"] = [np.inf, -np.inf]  # 2 non-finite cells of 40; not missing
    q = _quality(df)
    assert q.finiteness == pytest.approx(1 - 2 / 40) and q.completeness == 1.0
    assert q.score == pytest.approx(0.95)

    df = _clean().assign(c=7.0)  # 1 constant column of 4
    q = _quality(df)
    assert q.variability == pytest.approx(0.75) and q.score == pytest.approx(0.75)


def test_defects_compound_as_a_product(client):
    df = _clean().assign(name="same")  # 1 of 4 columns constant
    df.loc[[0, 1], "a"] = np.nan  # 2 of 40 cells missing
    df.loc[5, "b"] = np.inf  # 1 of 40 cells infinite
    q = _quality(df, npartitions=3)
    assert q.score == pytest.approx((38 / 40) * (39 / 40) * 0.75)
    assert 0.0 <= q.score <= 1.0


def test_schema_differences_and_unreadable_files_lower_consistency(client, tmp_path):
    folder = tmp_path / "lake"
    folder.mkdir()
    df = _clean(12)[["a", "b"]]
    for k in range(4):  # 4 files; the last one's 'b' is float32
        part = df.iloc[3 * k : 3 * k + 3]
        if k == 3:
            part = part.assign(b=part["b"].astype("float32"))
        part.to_parquet(folder / f"p{k}.parquet", index=False)
    prof = adp.profile(adp.read(str(folder / "p0.parquet")), source=str(folder))
    assert prof.files == 4 and len(prof.schema_differences) == 1
    assert prof.quality.consistency == pytest.approx(0.75)
    assert prof.quality.score == pytest.approx(0.75)
    # and an unreadable file counts like a differing one (built by hand: no data read)
    two_bad = DataProfile(
        rows=prof.rows,
        partitions=prof.partitions,
        empty_partitions=[],
        columns=prof.columns,
        files=4,
        schema_differences=prof.schema_differences,
        unreadable_files={"p9.parquet": "truncated"},
    )
    assert two_bad.quality.consistency == pytest.approx(0.5)


def test_a_frame_without_rows_scores_zero():
    empty = DataProfile(
        rows=0,
        partitions=1,
        empty_partitions=[0],
        columns=[ColumnProfile("a", "float64", 0, 0, False)],
    )
    assert empty.quality.score == 0.0 and empty.quality.completeness == 0.0


def test_the_score_is_in_the_summary_and_the_rendering(client):
    df = _clean().assign(c=1.0)
    prof = adp.profile(dd.from_pandas(df, npartitions=2))
    quality = prof.to_dict()["quality"]
    assert quality == {
        "score": 0.75,
        "completeness": 1.0,
        "finiteness": 1.0,
        "variability": 0.75,
        "consistency": 1.0,
    }
    assert "quality 0.750 (completeness 1.000" in prof.render()
    assert "variability 0.750" in prof.render()
