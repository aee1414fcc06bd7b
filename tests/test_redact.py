"""adp.redact: no password, key, secret or token survives into what ADP records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adp.redact import redact_options, redact_text, redact_url, redact_value, secret_values


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://adp:hunter2@db:5432/lake",
            "postgresql+psycopg://adp:***@db:5432/lake",
        ),
        ("postgresql://adp:p@ss@db/lake", "postgresql://adp:***@db/lake"),
        ("redis://:tok3n@cache:6379/0", "redis://:***@cache:6379/0"),
        ("s3://AKIA123:s3cr3t@bucket/path", "s3://AKIA123:***@bucket/path"),
        (
            "http://user:pass@host:9000/x?token=abc&part=1",
            "http://user:***@host:9000/x?token=***&part=1",
        ),
        ("https://h/f?X-Amz-Signature=abc", "https://h/f?X-Amz-Signature=***"),
        ("mysql://u@h/db?password=zz", "mysql://u@h/db?password=***"),
        ("postgresql://adp@db/lake", "postgresql://adp@db/lake"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
        ("/data/lake:v1@x", "/data/lake:v1@x"),
        ("s3://bucket/lake/", "s3://bucket/lake/"),
        # secrets urllib would cut at "/", "#", "?" or the first "@" (S3 secret keys hold "/")
        ("s3://AKIA123:wJal/rXU+tn@bucket/lake/", "s3://AKIA123:***@bucket/lake/"),
        ("s3://AKIA123:a#b?c:d@e@bucket/p", "s3://AKIA123:***@bucket/p"),
        ("s3://AKIA123:a%2Fb%40c@bucket/p", "s3://AKIA123:***@bucket/p"),
        ("postgresql://me@corp.com:pw@db/x", "postgresql://me@corp.com:***@db/x"),
        ("postgresql://u:p/w@/db?host=/tmp", "postgresql://u:***@/db?host=/tmp"),
        # the scheme-less form s3fs puts in its messages
        ("AKIA123:wJal/rXU@bucket/lake/x.parquet", "AKIA123:***@bucket/lake/x.parquet"),
        # no password: an "@" or ":" in a path or key is no userinfo
        ("s3://bucket/snap@2024/x", "s3://bucket/snap@2024/x"),
        ("s3://bucket/a:b@c/x", "s3://bucket/a:b@c/x"),
        ("data/lake:v1@x", "data/lake:v1@x"),
        ("http://u@h:9000/x", "http://u@h:9000/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message() -> None:
    text = (
        "cannot open 's3://K1:se/cr@t@bucket/x' nor FileNotFoundError: K2:an/other@b/y,"
        " (postgresql://u:p#w@db/z)"
    )
    assert redact_text(text) == (
        "cannot open 's3://K1:***@bucket/x' nor FileNotFoundError: K2:***@b/y,"
        " (postgresql://u:***@db/z)"
    )


# Secrets drawn from every printable character but whitespace: "/", "+", "@", ":", "#",
# "?", "%", quotes and brackets included.
_SECRET = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)


@settings(max_examples=400, deadline=None)
@given(secret=_SECRET, scheme=st.sampled_from(["s3", "s3a", "postgresql+psycopg", "https"]))
def test_no_secret_survives_in_a_url_whatever_its_characters(secret: str, scheme: str) -> None:
    """Raw and percent-encoded: the password, and nothing else, is masked (so no character
    of it is shown, however short it is)."""
    for spelled in (secret, quote(secret, safe="")):
        url = f"{scheme}://AKIAKEY:{spelled}@bucket-1/lake/part.parquet"
        assert redact_url(url) == f"{scheme}://AKIAKEY:***@bucket-1/lake/part.parquet"
        message = f"error: cannot read '{url}': it is gone; see {url}"
        shown = redact_text(message) or ""
        assert shown == (
            f"error: cannot read '{scheme}://AKIAKEY:***@bucket-1/lake/part.parquet': it is "
            f"gone; see {scheme}://AKIAKEY:***@bucket-1/lake/part.parquet"
        )


@settings(max_examples=400, deadline=None)
@given(secret=_SECRET.filter(lambda s: not s.startswith("//")))
def test_no_secret_survives_in_the_scheme_less_form(secret: str) -> None:
    """``key:secret@bucket/key`` as s3fs prints paths; a secret starting with ``//`` would
    read as ``key://...``, a URL whose userinfo is ``secret``'s user part."""
    for spelled in (secret, quote(secret, safe="")):
        shown = redact_text(f"FileNotFoundError: AKIAKEY:{spelled}@bucket-1/lake/part.parquet")
        assert shown == "FileNotFoundError: AKIAKEY:***@bucket-1/lake/part.parquet"


def test_redact_options_hides_secrets_at_any_depth() -> None:
    options = {
        "key": "AKIAPLANTED",
        "secret": "PlantedSecret",
        "token": "",
        "anon": False,
        "client_kwargs": {
            "endpoint_url": "http://u:pw9@127.0.0.1:9000",
            "aws_secret_access_key": "x1y2z3",
            "region_name": "eu",
        },
    }
    shown = redact_options(options)
    assert shown == {
        "key": "***",
        "secret": "***",
        "token": "",
        "anon": False,
        "client_kwargs": {
            "endpoint_url": "http://u:***@127.0.0.1:9000",
            "aws_secret_access_key": "***",
            "region_name": "eu",
        },
    }
    assert options["key"] == "AKIAPLANTED"  # a copy
    assert secret_values(options) == ["PlantedSecret", "AKIAPLANTED", "x1y2z3"]  # longest first
    assert redact_options(None) is None


def test_redact_text_and_values() -> None:
    text = "cannot write postgresql://a:PwX1@h/db with key AKIAPLANTED"
    assert redact_text(text, ["AKIAPLANTED"]) == "cannot write postgresql://a:***@h/db with key ***"
    data = {"output": "s3://k:PwX1@b/o", "rows": 3, "key": ["id"], "nested": [{"token": "t0k"}]}
    assert redact_value(data) == {
        "output": "s3://k:***@b/o",
        "rows": 3,
        "key": ["id"],
        "nested": [{"token": "***"}],
    }
    assert "PwX1" not in json.dumps(redact_value(data))


# -- a job run with planted secrets: every artefact is grepped --------------------------------
PG_PASSWORD = "PlantedPgPw7731"
S3_KEY = "PlantedKeyAKIA5521"
S3_SECRET = "PlantedS3cret9913"
PLANTED = (PG_PASSWORD, S3_KEY, S3_SECRET)


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{secret} in {where}" for secret in PLANTED if secret.encode() in data]


def _adp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adp.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_planted_secrets_appear_in_no_artefact(client, pg_url, s3, tmp_path, table_name) -> None:
    import urllib.request

    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    import yaml

    import adp
    from adp.observe.audit import AuditLog

    secret_pg = pg_url.replace("postgres@", f"postgres:{PG_PASSWORD}@")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(800, 4)), columns=["a", "b", "c", "d"])
    frame.insert(0, "id", np.arange(800))
    engine = sa.create_engine(pg_url)
    frame.to_sql(f"{table_name}_src", engine, index=False)
    engine.dispose()
    bucket = s3.bucket("planted")
    options = {
        "key": S3_KEY,
        "secret": S3_SECRET,
        "client_kwargs": s3.storage_options["client_kwargs"],
    }
    frame.to_parquet(f"s3://{bucket}/lake/part-0.parquet", storage_options=s3.storage_options)

    # a registered model whose recorded source carries the password
    fitted = adp.create_detector("iforest", n_estimators=20, random_state=0).fit(
        dd.from_pandas(frame[["a", "b", "c", "d"]], npartitions=2)
    )
    adp.models.register(fitted, f"planted{table_name[-6:]}", source=secret_pg)

    jobs = {
        "sql": {
            "name": "planted-sql",
            "source": {
                "uri": secret_pg,
                "options": {"table": f"{table_name}_src", "index_col": "id", "npartitions": 2},
            },
            "detector": {"name": "iforest", "params": {"n_estimators": 20}},
            "output": {"uri": secret_pg, "table": f"{table_name}_out"},
        },
        "s3": {
            "name": "planted-s3",
            "source": {"uri": f"s3://{bucket}/lake/", "storage_options": options, "key": ["id"]},
            "detector": {"name": "iforest", "params": {"n_estimators": 20}},
            "output": {"uri": str(tmp_path / "out")},
        },
    }
    leaks: list[str] = []
    for kind, spec in jobs.items():
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(spec))
        args = ["run", str(path), "--scheduler", client.scheduler.address, "--no-progress"]
        if kind == "s3":
            args += ["--report", str(tmp_path / "report.html")]
        done = _adp(*args)
        assert done.returncode == 0, done.stderr
        leaks += _leaks(done.stdout, f"{kind} summary") + _leaks(done.stderr, f"{kind} logs")
    # a job that fails writing its table: the error names nothing secret either
    jobs["sql"]["output"]["mode"] = "error"
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(jobs["sql"]))
    again = _adp("run", str(tmp_path / "again.yaml"), "--scheduler", client.scheduler.address)
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    leaks += _leaks(again.stdout + again.stderr, "failed job output")

    for file in sorted((tmp_path / "out").rglob("*")):
        if file.is_file():
            leaks += _leaks(file.read_bytes(), f"output file {file.name}")
    report = (tmp_path / "report.html").read_text()
    assert "planted-s3" in report
    leaks += _leaks(report, "report")

    with AuditLog(create=False) as log:
        records = [json.dumps(r.to_dict()) for r in log.records()]
    assert any("postgres:***@" in r for r in records)  # recorded, with the password masked
    leaks += _leaks("\n".join(records), "audit records")
    shown = _adp("audit", "show", "--json")
    leaks += _leaks(shown.stdout + shown.stderr, "adp audit show")

    listed = _adp("models", "list", "--json")
    assert listed.returncode == 0 and "postgres:***@" in listed.stdout, listed.stderr
    leaks += _leaks(listed.stdout, "adp models list --json")
    registry = adp.models.default_registry()
    with registry.catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(registry.catalog.table)).all()
    leaks += _leaks("\n".join(map(str, rows)), "registry rows")

    metrics_url = client.dashboard_link.replace("/status", "/metrics")
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    assert "adp_jobs_finished_total" in metrics
    leaks += _leaks(metrics, "scheduler /metrics")
    assert leaks == []


def test_sql_errors_carry_no_data_values(pg_url: str, table_name: str) -> None:
    """SQLAlchemy puts a failed statement's parameters in its message; ADP's engines hide them."""
    import sqlalchemy as sa

    from adp.db import engine_for

    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table_name} (id int primary key, v text)")
    insert = sa.text(f"INSERT INTO {table_name} VALUES (:id, :v)")
    with engine.begin() as conn:
        conn.execute(insert, {"id": 1, "v": "PlantedValue42"})
    with pytest.raises(sa.exc.IntegrityError) as err, engine.begin() as conn:
        conn.execute(insert, {"id": 1, "v": "PlantedValue42"})
    assert "PlantedValue42" not in str(err.value)
    assert "parameters hidden" in str(err.value)
