"""The bad-input catalogue: every case fails with an ADP error that names the file,
partition, column, field or endpoint at fault, and nothing already written is lost."""

from __future__ import annotations

import os
import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import adp
from adp.db import engine_for
from adp.errors import (
    AccessDeniedError,
    ConfigError,
    DataError,
    OutputExistsError,
    SourceError,
    SpecError,
)
from adp.io.sql import write_table
from adp.io.sql_write import table_rows
from adp.io.validate import apply_missing_policy
from adp.paths import check_storage_options

FAST_FAIL = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}


def _df(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "y": rng.normal(size=n)})


def _lake(tmp_path, files: int = 3) -> str:
    folder = tmp_path / "lake"
    folder.mkdir()
    for i in range(files):
        _df(50, seed=i).assign(id=lambda d, i=i: d["id"] + 50 * i).to_parquet(
            folder / f"part.{i}.parquet", index=False
        )
    return str(folder)


def _sqlite(tmp_path, name: str = "metrics", df: pd.DataFrame | None = None) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        (_df() if df is None else df).to_sql(name, conn, index=False)
        conn.execute(sa.text("CREATE TABLE x (v INTEGER)"))
    engine.dispose()
    return url


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- files -------------------------------------------------------------------------------


def test_truncated_parquet_file_is_named(client, tmp_path):
    lake = _lake(tmp_path)
    path = os.path.join(lake, "part.1.parquet")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"part\.1\.parquet.*corrupt or truncated"):
        adp.read(lake)


def test_corrupt_parquet_file_on_s3_is_named(client, s3):
    bucket = s3.bucket()
    fs = s3.fs()
    with fs.open(f"{bucket}/lake/good.parquet", "wb") as f:
        _df().to_parquet(f)
    with fs.open(f"{bucket}/lake/bad.parquet", "wb") as f:
        f.write(b"PAR1" + os.urandom(200))
    with pytest.raises(DataError, match=rf"s3://{bucket}/lake/bad\.parquet|{bucket}/lake/bad"):
        adp.read(f"s3://{bucket}/lake/", storage_options=s3.storage_options)


def test_schema_drift_type_change_names_file_and_column(client, tmp_path):
    lake = _lake(tmp_path)
    _df(10).assign(x=lambda d: d["x"].astype(str)).to_parquet(
        os.path.join(lake, "part.9.parquet"), index=False
    )
    with pytest.raises(
        DataError, match=r"schema drift.*part\.9\.parquet.*x: double -> (large_)?string"
    ):
        adp.read(lake)


def test_schema_drift_missing_column_names_the_column(client, tmp_path):
    lake = _lake(tmp_path)
    _df(10).drop(columns="y").to_parquet(os.path.join(lake, "part.8.parquet"), index=False)
    with pytest.raises(DataError, match=r"part\.8\.parquet lacks columns \['y'\]"):
        adp.read(lake)
    # reading only the shared columns is the documented way out
    assert len(adp.read(lake, columns=["id", "x"]).compute()) == 160


def test_missing_path(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        adp.read(str(tmp_path / "nowhere" / "data.parquet"))


def test_empty_dataset_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(SourceError, match="empty folder"):
        adp.read(str(tmp_path / "empty"))


def test_unknown_format_and_reader_option(tmp_path):
    with pytest.raises(ConfigError, match="unknown format 'xls'"):
        adp.read(str(tmp_path), format="xls")
    with pytest.raises(ConfigError, match=r"\['tabel'\] do not apply to a database"):
        adp.read("sqlite:///m.db", tabel="metrics")


def test_csv_column_that_does_not_exist(client, tmp_path):
    _df().to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match=r"columns \['speed'\] are not in"):
        adp.read(str(tmp_path / "a.csv"), columns=["x", "speed"])


# -- data quality ------------------------------------------------------------------------


def test_non_numeric_feature_is_named(client):
    ddf = dd.from_pandas(_df().assign(site="a"), npartitions=2)
    with pytest.raises(DataError, match=r"'site'"):
        apply_missing_policy(ddf, ["x", "site"], "fail")
    with pytest.raises(DataError, match=r"'site'"):
        adp.create_detector("hbos").fit(ddf, features=["x", "site"])


def test_all_nan_column_cannot_be_imputed(client):
    ddf = dd.from_pandas(_df().assign(dead=np.nan), npartitions=3)
    with pytest.raises(DataError, match=r"\['dead'\] have no finite value"):
        apply_missing_policy(ddf, ["x", "dead"], "impute_median")
    prof = adp.profile(ddf)
    assert prof.column("dead").nulls == 100 and "dead (float64): 100 nulls" in prof.render()


def test_missing_values_under_the_fail_policy_name_the_partition(client):
    df = _df()
    df.loc[77, "y"] = np.nan
    checked, _ = apply_missing_policy(dd.from_pandas(df, npartitions=4), ["x", "y"])
    with pytest.raises(DataError, match=r"partition 3: .*\{'y': 1\} \(first at index 77\)"):
        checked.compute()


def test_empty_partitions_are_reported_and_an_empty_fit_is_refused(client):
    ddf = dd.from_pandas(_df(), npartitions=4)
    sparse = ddf[ddf["id"] < 10]  # partitions 1..3 empty
    assert adp.profile(sparse).empty_partitions == [1, 2, 3]
    checked, _ = apply_missing_policy(sparse, ["x", "y"], "drop")
    assert len(checked.compute()) == 10
    with pytest.raises(DataError, match="no rows"):
        adp.create_detector("hbos").fit(ddf[ddf["id"] < 0], features=["x", "y"])


# -- SQL ---------------------------------------------------------------------------------


def test_missing_table_lists_the_tables(client, tmp_path):
    url = _sqlite(tmp_path)
    with pytest.raises(SourceError, match=r"table 'metric' is not in .*\['metrics', 'x'\]"):
        adp.read(url, table="metric", index_col="id")


def test_table_without_usable_index_column(client, tmp_path):
    df = pd.DataFrame({"name": ["a", "b"], "value": [1.0, 2.0]})
    url = _sqlite(tmp_path, "labels", df)
    with pytest.raises(DataError, match="no usable index column"):
        adp.read(url, table="labels")
    with pytest.raises(DataError, match=r"index column 'name' .* integer or datetime"):
        adp.read(url, table="labels", index_col="name")


def test_index_column_with_nulls_would_lose_rows(client, tmp_path):
    df = pd.DataFrame({"id": [1.0, None, 3.0], "v": [1.0, 2.0, 3.0]}).astype({"id": "Int64"})
    url = _sqlite(tmp_path, "gaps", df)
    with pytest.raises(DataError, match="1 NULL values"):
        adp.read(url, table="gaps", index_col="id")


def test_sql_injection_in_table_name_is_refused(client, tmp_path):
    url = _sqlite(tmp_path)
    with pytest.raises(SourceError, match=r"'metrics; DROP TABLE x' is not in"):
        adp.read(url, table="metrics; DROP TABLE x", index_col="id")
    assert _tables(url) == ["metrics", "x"]


def test_sql_injection_in_column_names_is_refused(client, tmp_path):
    url = _sqlite(tmp_path)
    with pytest.raises(DataError, match=r"column 'x; DROP TABLE x' is not in table 'metrics'"):
        adp.read(url, table="metrics", index_col="id", columns=["x; DROP TABLE x"])
    with pytest.raises(DataError, match=r"column 'id; DROP TABLE x'"):
        adp.read(url, table="metrics", index_col="id; DROP TABLE x")
    with pytest.raises(ConfigError, match="not a plain SQL identifier"):
        write_table(dd.from_pandas(_df(), npartitions=1), url, "out; DROP TABLE x", key=["id"])
    assert _tables(url) == ["metrics", "x"]


def test_sql_query_as_a_string_is_refused(tmp_path):
    url = _sqlite(tmp_path)
    with pytest.raises(ConfigError, match="selectable"):
        adp.read(url, query="SELECT * FROM metrics", index_col="id")


def test_empty_table(client, tmp_path):
    url = _sqlite(tmp_path, "no_rows", _df().iloc[:0])
    with pytest.raises(DataError, match=r"table 'no_rows' .* has no rows"):
        adp.read(url, table="no_rows", index_col="id")


def test_unreachable_database_hides_the_password():
    url = "postgresql+psycopg://adp:s3cret@127.0.0.1:1/test"
    with pytest.raises(
        SourceError, match=r"cannot connect to the database .*127\.0\.0\.1:1"
    ) as err:
        adp.read(url, table="metrics", index_col="id")
    assert "s3cret" not in str(err.value)


# -- endpoints and locations -------------------------------------------------------------


def test_credential_less_endpoint(s3):
    options = {"client_kwargs": {"endpoint_url": s3.endpoint}, **FAST_FAIL}
    with pytest.raises(AccessDeniedError, match=rf"no usable credentials.*{s3.endpoint}|endpoint"):
        adp.read("s3://some-bucket/lake/", storage_options=options)


def test_unreachable_endpoint_is_named():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}, **FAST_FAIL}
    with pytest.raises(SourceError, match=rf"unreachable.*|{endpoint}") as err:
        adp.read("s3://bucket/lake/", storage_options=options)
    assert endpoint in str(err.value)


def test_path_outside_allowed_roots(tmp_path):
    lake = _lake(tmp_path)
    with dask.config.set({"adp.io.allowed-roots": [str(tmp_path / "elsewhere"), "s3://ok/"]}):
        with pytest.raises(AccessDeniedError, match=r"outside the allowed roots"):
            adp.read(lake)
        with pytest.raises(AccessDeniedError, match=r"s3://other/lake"):
            adp.read("s3://other/lake/")
        with pytest.raises(AccessDeniedError, match=r"db\.sqlite.*outside the allowed roots"):
            adp.read(f"sqlite:///{tmp_path / 'db.sqlite'}", table="metrics")


def test_link_local_metadata_endpoint_is_refused():
    for endpoint in ("http://169.254.169.254", "http://2852039166/", "http://[fe80::1]:80"):
        options = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
        with pytest.raises(AccessDeniedError, match=r"link-local.*allow-link-local-endpoints"):
            adp.read("s3://bucket/lake/", storage_options=options)
    with pytest.raises(AccessDeniedError, match="database URL host"):
        adp.read("postgresql+psycopg://u@169.254.169.254/db", table="t")
    with dask.config.set({"adp.io.allow-link-local-endpoints": True}):
        check_storage_options({"endpoint_url": "http://169.254.169.254"})  # allowed: no error


def test_malformed_endpoint_and_storage_options():
    with pytest.raises(ConfigError, match=r"client_kwargs\.endpoint_url='ftp://h'"):
        check_storage_options({"client_kwargs": {"endpoint_url": "ftp://h"}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        check_storage_options(["key", "x"])  # type: ignore[arg-type]


# -- arrays ------------------------------------------------------------------------------


def test_array_store_errors_name_the_variable_and_file(tmp_path):
    import xarray as xr

    ds = xr.Dataset(
        {"t": (("time", "sensor"), np.zeros((4, 2))), "p": (("time", "site"), np.zeros((4, 3)))}
    )
    path = str(tmp_path / "a.nc")
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=r"'t' has \('time', 'sensor'\), 'p' has"):
        adp.read(path)
    with pytest.raises(DataError, match=r"variables \['rain'\] are not in the dataset"):
        adp.read(path, variables=["rain"])
    with pytest.raises(ConfigError, match="window=9 is longer than the 4 time steps"):
        adp.read(path, variables=["t"], window=9)
    broken = tmp_path / "broken.nc"
    broken.write_bytes(b"CDF\x01 this is not netCDF")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SourceError, match=r"broken\.nc"):
            adp.read(str(broken))


# -- specs and outputs -------------------------------------------------------------------


def test_yaml_spec_with_unknown_keys(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "source: {uri: data/, storag_options: {anon: true}}\n"
        "detector: {name: iforest}\noutput: {uri: out/}\n"
    )
    with pytest.raises(SpecError, match=r"source\.storag_options: unknown field"):
        adp.JobSpec.from_yaml(path)


def test_yaml_spec_with_wrong_types(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "source: {uri: data/, options: [table, metrics], missing: sometimes}\n"
        "detector: {name: iforest}\noutput: {uri: out/}\n"
    )
    with pytest.raises(SpecError) as err:
        adp.JobSpec.from_yaml(path)
    assert "source.options" in str(err.value) and "source.missing" in str(err.value)


def test_output_table_holding_a_different_dataset_is_left_alone(client, tmp_path):
    url = _sqlite(tmp_path)
    scored = dd.from_pandas(_df().assign(score=0.5, is_anomaly=False), npartitions=2)
    with pytest.raises(OutputExistsError, match=r"'metrics' .* holds a different dataset"):
        write_table(scored, url, "metrics", key=["id"], mode="upsert")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_table(scored, url, "metrics", key=["id"])
    assert table_rows(url, "metrics") == 100
    assert _tables(url) == ["metrics", "x"]  # no staging table left behind


def test_output_folder_holding_a_dataset_is_not_overwritten(tmp_path):
    from adp.io.sinks import check_target

    lake = _lake(tmp_path)
    with pytest.raises(OutputExistsError, match="already holds data"):
        check_target(lake, "error")
    assert len(os.listdir(lake)) == 3


def _fail_on_partition_two(part: pd.DataFrame, partition_info=None) -> pd.DataFrame:
    if partition_info and partition_info["number"] == 2:
        raise RuntimeError("worker lost its disk")
    return part


def test_a_failed_write_keeps_the_rows_already_written(client, tmp_path):
    url = _sqlite(tmp_path)
    scored = dd.from_pandas(_df(300).assign(score=1.0), npartitions=4)
    assert write_table(scored, url, "scores", key=["id"]) == 300
    broken = scored.assign(score=2.0).map_partitions(_fail_on_partition_two, meta=scored._meta)
    with pytest.raises(RuntimeError, match="lost its disk"):
        write_table(broken, url, "scores", key=["id"], mode="overwrite")
    back = pd.read_sql(sa.text("SELECT score FROM scores"), engine_for(url))
    assert len(back) == 300 and (back["score"] == 1.0).all()
    assert "_adp_stage" not in " ".join(_tables(url))


def test_duplicate_keys_are_refused_before_the_target_changes(client, tmp_path):
    url = _sqlite(tmp_path)
    twice = dd.from_pandas(pd.concat([_df(20), _df(20)]), npartitions=2)
    with pytest.raises(DataError, match=r"key \['id'\] is not unique.*occurs 2 times"):
        write_table(twice, url, "scores", key=["id"], mode="upsert")
    assert "scores" not in _tables(url)


# -- per-file naming of CSV and JSON-lines errors; bounded column lists --------------------


def _csv_folder(tmp_path, bad_row: str) -> str:
    folder = tmp_path / "csvs"
    folder.mkdir()
    rows = "\n".join(f"{i},{i * 0.5}" for i in range(20_000))  # past dask's 256 kB sample
    (folder / "a.csv").write_text("id,x\n" + rows + "\n")
    (folder / "b.csv").write_text("id,x\n" + rows + "\n" + bad_row + "\n")
    return str(folder)


@pytest.mark.parametrize(
    ("bad_row", "expected"),
    [
        ("20000,abc", r"CSV file '[^']*b\.csv': column 'x' is numeric .* such as 'abc'"),
        ("20000,1.0,7,8", r"cannot parse CSV file '[^']*b\.csv': .*Expected 2 fields"),
    ],
    ids=["non-numeric-cell", "extra-field"],
)
def test_csv_cell_errors_name_the_file(client, tmp_path, bad_row, expected):
    ddf = adp.read(_csv_folder(tmp_path, bad_row))
    with pytest.raises(DataError, match=expected) as err:
        ddf.compute()
    assert "a.csv" not in str(err.value)


def test_csv_error_in_the_first_rows_names_the_file_at_once(tmp_path):
    (tmp_path / "good.csv").write_text("id,x\n1,0.5\n2,0.7\n")
    (tmp_path / "bad.csv").write_text("id,x\n1,0.5\n2,0.7,9,9\n")
    with pytest.raises(DataError, match=r"bad\.csv"):
        adp.read(str(tmp_path / "*.csv"))


def test_json_lines_errors_name_the_file(client, tmp_path):
    lines = "\n".join(f'{{"id": {i}, "x": {i * 0.5}}}' for i in range(50))
    (tmp_path / "a.jsonl").write_text(lines + "\n")
    (tmp_path / "b.jsonl").write_text(lines + '\n{"id": 50, "x": \n')
    with pytest.raises(DataError, match=r"JSON-lines file '[^']*b\.jsonl'"):
        adp.read(str(tmp_path / "*.jsonl")).compute()


def test_csv_files_read_one_reader_each_keep_every_row(client, tmp_path):
    ddf = adp.read(_csv_folder(tmp_path, "20000,2.5"))
    assert ddf.npartitions >= 2
    frame = ddf.compute()
    assert len(frame) == 40_001 and frame["x"].dtype == np.float64


def test_feature_errors_print_bounded_lists():
    from adp.detect.features import feature_matrix, resolve_features

    wide = pd.DataFrame({f"c{i}": [1.0] for i in range(300)}).assign(s="a")
    ddf = dd.from_pandas(wide, npartitions=1)
    with pytest.raises(DataError) as err:
        resolve_features(ddf, features=[f"f{i}" for i in range(100_000)])
    assert "... and 99990 more" in str(err.value) and "... and 291 more" in str(err.value)
    assert len(str(err.value)) < 500
    with pytest.raises(DataError, match=r"not: \['s'\]") as err:
        resolve_features(ddf, features=["c0", "s"])
    empty = dd.from_pandas(pd.DataFrame({f"s{i}": ["a"] for i in range(300)}), npartitions=1)
    with pytest.raises(DataError, match="no numeric feature") as err:
        resolve_features(empty)
    assert len(str(err.value)) < 500
    nan = pd.DataFrame({f"c{i}": [np.nan] for i in range(3000)})
    with pytest.raises(DataError, match=r"\{'c0': 1, .* and 2990 more\}") as err:
        feature_matrix(nan, list(nan.columns))
    assert len(str(err.value)) < 500
