"""Pre-flight against real endpoints: a hung S3 server and a hung PostgreSQL host fail within
15 s naming the endpoint; a job's report that fails after the commit is a warning; reports
of table and S3 outputs read them with the job's own settings; parser errors are one line."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adp.errors import AdpError, DataError, SourceError
from adp.jobs.preflight import preflight
from adp.jobs.source_check import source_columns
from adp.jobs.spec import JobSpec, SourceSpec


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def _dead_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    return port


def _s3_source(port: int) -> SourceSpec:
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
    return SourceSpec(uri="s3://lake/data/", storage_options=options)


@pytest.mark.slow
def test_hung_s3_endpoint_fails_within_15_s_naming_it(hung_port) -> None:
    started = time.perf_counter()
    with pytest.raises(SourceError) as info:
        source_columns(_s3_source(hung_port))
    elapsed = time.perf_counter() - started
    assert elapsed < 15, elapsed
    message = str(info.value)
    assert f"http://127.0.0.1:{hung_port}" in message and "did not answer in time" in message
    assert "corrupt" not in message and "\n" not in message


@pytest.mark.slow
def test_hung_postgresql_host_fails_within_15_s_naming_it(hung_port) -> None:
    url = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{hung_port}/test"
    started = time.perf_counter()
    with pytest.raises(SourceError) as info:
        source_columns(SourceSpec(uri=url, options={"table": "t"}))
    elapsed = time.perf_counter() - started
    assert elapsed < 15, elapsed
    message = str(info.value)
    assert f"127.0.0.1:{hung_port}/test" in message and "timeout" in message
    assert "s3cret" not in message


def test_dead_endpoints_fail_fast_naming_them() -> None:
    port = _dead_port()
    started = time.perf_counter()
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}.*unreachable"):
        source_columns(_s3_source(port))
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}/test"):
        source_columns(
            SourceSpec(uri=f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", options={})
        )
    assert time.perf_counter() - started < 15


def test_timeouts_are_configurable(hung_port) -> None:
    import dask

    with dask.config.set({"adp.io.read-timeout": 1, "adp.io.retries": 0}):
        started = time.perf_counter()
        with pytest.raises(SourceError, match="did not answer in time"):
            source_columns(_s3_source(hung_port))
        assert time.perf_counter() - started < 6


def test_s3_source_columns_and_credentials_with_one_call(s3) -> None:
    bucket = s3.bucket()
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    with s3.fs().open(f"{bucket}/lake/p.parquet", "wb") as f:
        frame.to_parquet(f)
    source = SourceSpec(uri=f"s3://{bucket}/lake/", storage_options=s3.options())
    assert source_columns(source) == ["a", "b"]
    missing = SourceSpec(uri=f"s3://{bucket}/nothing/", storage_options=s3.options())
    with pytest.raises(SourceError, match="does not exist"):
        source_columns(missing)


def _lake(folder: Path, rows: int = 400) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["id"] = np.arange(rows)
    frame.to_parquet(folder / "p.parquet", index=False)
    return folder


def _spec(source: str, output: dict, **extra) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "pf",
            "source": {"uri": source, "key": ["id"]},
            "detector": {"name": "hbos"},
            "output": output,
            "profile": False,
            **extra,
        }
    )


@pytest.mark.slow
def test_report_failing_after_the_commit_is_a_warning(client, tmp_path, capfd) -> None:
    from adp.jobs.console import run_and_report

    lake = _lake(tmp_path / "lake")
    spec = _spec(str(lake), {"uri": str(tmp_path / "scores")})
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = run_and_report(
        spec,
        scheduler=client.scheduler.address,
        report_path=blocker / "r.html",  # its folder is a file: refused by pre-flight...
        progress=False,
        check=False,  # ...so skip it, as if the folder became a file during the job
    )
    assert result.rows == 400 and result.report_path is None
    assert len(pd.read_parquet(tmp_path / "scores")) == 400  # committed
    err = capfd.readouterr().err
    assert "warning: the output is committed, but the report" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_report_of_a_table_output_and_of_an_s3_output(client, tmp_path, s3, monkeypatch) -> None:
    from adp.jobs.console import run_and_report

    monkeypatch.chdir(tmp_path)  # a table output's report goes to <name>.report.html here
    lake = _lake(tmp_path / "lake")
    db = f"sqlite:///{tmp_path / 'scores.db'}"
    spec = _spec(str(lake), {"uri": db, "table": "scores"}, report={"top": 5})
    result = run_and_report(
        spec, scheduler=client.scheduler.address, report_path=None, progress=False
    )
    assert result.report_path == str(tmp_path / "pf.report.html")
    page = Path(str(result.report_path)).read_text()
    assert "<svg" in page and "Top 5 anomalies" in page

    bucket = s3.bucket()
    spec = _spec(
        str(lake),
        {"uri": f"s3://{bucket}/scores/", "storage_options": s3.options()},
        report={"path": str(tmp_path / "s3.html")},
    )
    result = run_and_report(
        spec, scheduler=client.scheduler.address, report_path=None, progress=False
    )
    assert result.report_path == str(tmp_path / "s3.html")
    assert "<svg" in (tmp_path / "s3.html").read_text()


@pytest.mark.slow
def test_a_csv_with_an_extra_field_fails_in_one_line_naming_it(client, tmp_path) -> None:
    from adp.jobs.console import run_and_report

    csv = tmp_path / "d.csv"
    body = "".join(f"{i},{i * 0.5},{i % 7}\n" for i in range(2000))
    csv.write_text("id,a,b\n" + body + "2000,1.0,2,9\n")
    spec = _spec(str(csv), {"uri": str(tmp_path / "scores")})
    with pytest.raises(AdpError) as info:
        run_and_report(spec, scheduler=client.scheduler.address, report_path=None, progress=False)
    message = str(info.value)
    assert isinstance(info.value, DataError)
    assert str(csv) in message and "Expected 3 fields" in message and "\n" not in message
    assert not (tmp_path / "scores").exists()


def test_evaluate_label_that_does_not_exist_fails_before_any_work(tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    spec = _spec(str(lake), {"uri": str(tmp_path / "scores")}, evaluate={"label": "truth"})
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"evaluate.label names \['truth'\]"):
        preflight(spec)
    assert time.perf_counter() - started < 3
