"""``adp bench io``: read throughput (rows/s) of each kind of source, on 1 and 2 workers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from adp.bench.measure import cluster, fresh_token, timed
from adp.errors import ConfigError


@dataclass
class MotoS3:
    """A running moto S3 server: its endpoint and the storage_options that reach it."""

    endpoint: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def bucket(self, prefix: str = "adp") -> str:
        """Create a fresh bucket and return its name."""
        import uuid

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.fs().mkdir(name)
        return name

    def options(self, **extra: Any) -> dict[str, Any]:
        """A copy of the storage options with ``extra`` merged in."""
        return {**self.storage_options, **extra}


def start_moto() -> tuple[Any, MotoS3]:
    """Start moto's threaded S3 server on 127.0.0.1 on a free port, werkzeug silenced.

    Returns ``(server, MotoS3)``; call ``server.stop()`` when done. Needs ``moto[server]``.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
    return server, MotoS3(endpoint, options)


PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_COLUMNS = 8
_PARTITIONS = 8


def _data(rows: int, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(size=(rows, _COLUMNS)), columns=[f"f{i}" for i in range(_COLUMNS)]
    )
    frame.insert(0, "id", np.arange(rows, dtype=np.int64))
    return frame


def _consume(part: Any, nonce: str) -> Any:
    import pandas as pd

    # Touch every value, so that nothing is skipped, and return one small row.
    return pd.DataFrame(
        {"rows": [len(part)], "total": [float(part.select_dtypes("number").sum().sum())]}
    )


def _measure(client: Any, make: Any, workers: list[str], label: str) -> tuple[float, int, int]:
    import pandas as pd

    with timed() as timer:
        ddf = make()
        meta = pd.DataFrame({"rows": pd.Series(dtype="int64"), "total": pd.Series(dtype="float64")})
        counts = ddf.map_partitions(_consume, fresh_token(), meta=meta)
        future = client.compute(counts, workers=workers, allow_other_workers=False)
        result = future.result()
    del future
    return timer.seconds, int(result["rows"].sum()), int(ddf.npartitions)


def _pg_reachable(url: str) -> str | None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return None
    except Exception as exc:  # any failure: reported in the table, not raised
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def bench_io(rows: int = 200_000, client: Any = None, *, pg_url: str = PG_URL) -> Any:
    """Measure read throughput of each kind of source with 1 and 2 workers, in one run.

    Sources: Parquet on local disk, Parquet on S3 (moto's server on 127.0.0.1, reached
    through s3fs), SQLite and PostgreSQL (``pg_url``; reported as unavailable when it
    cannot be reached). Each source holds ``rows`` rows of an ``id`` and 8 float columns in
    8 partitions, read with :func:`adp.read` and consumed (every value summed) on the
    workers. Every source is read once untimed first (imports, connections), then timed
    with its tasks restricted to 1 worker and to 2 workers of the same cluster.

    Parameters
    ----------
    rows : int
        Rows per source.
    client : distributed.Client, optional
        A cluster with at least 2 workers; default the current client, else a new
        LocalCluster of 2 single-threaded worker processes.
    pg_url : str
        The PostgreSQL database to write a temporary table to.

    Returns
    -------
    pandas.DataFrame
        One row per source and worker count: ``source``, ``workers``, ``rows``,
        ``partitions``, ``seconds``, ``rows_per_s``, ``status``.

    Raises
    ------
    adp.errors.ConfigError
        For fewer ``rows`` than partitions, or a ``client`` with fewer than 2 workers.
    """
    import tempfile
    import uuid
    from contextlib import ExitStack

    import pandas as pd
    import sqlalchemy as sa

    import adp

    if rows < _PARTITIONS:
        raise ConfigError(f"rows must be at least {_PARTITIONS} (one per partition), got {rows}")
    frame = _data(rows)
    records: list[dict[str, Any]] = []
    with ExitStack() as stack:
        client = stack.enter_context(cluster(client, reuse_current=True))
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if len(workers) < 2:
            raise ConfigError(
                f"bench_io needs a cluster with 2 workers, the client's has {len(workers)}: "
                "pass client=None for a new 2-worker LocalCluster"
            )
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="adp-bench-io-"))
        bounds = [i * rows // _PARTITIONS for i in range(_PARTITIONS + 1)]
        chunks = [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

        sources: dict[str, Any] = {}
        lake = f"{tmp}/lake"
        os.makedirs(lake)
        for i, chunk in enumerate(chunks):
            chunk.to_parquet(f"{lake}/part.{i}.parquet", index=False)
        sources["parquet-local"] = lambda: adp.read(lake, format="parquet")

        server, s3 = start_moto()
        stack.callback(server.stop)
        bucket = s3.bucket("adp-bench")
        fs = s3.fs()
        for i, chunk in enumerate(chunks):
            with fs.open(f"{bucket}/lake/part.{i}.parquet", "wb") as f:
                chunk.to_parquet(f, index=False)
        sources["parquet-s3"] = lambda: adp.read(
            f"s3://{bucket}/lake/", storage_options=s3.storage_options
        )

        table = f"adp_bench_{uuid.uuid4().hex[:10]}"
        sqlite_url = f"sqlite:///{tmp}/bench.db"
        frame.to_sql(table, sa.create_engine(sqlite_url), index=False, chunksize=50_000)
        sources["sqlite"] = lambda: adp.read(
            sqlite_url, table=table, index_col="id", npartitions=_PARTITIONS
        )

        problem = _pg_reachable(pg_url)
        if problem is None:
            engine = sa.create_engine(pg_url)
            frame.to_sql(table, engine, index=False, chunksize=50_000)

            def _drop() -> None:
                with engine.begin() as conn:
                    sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)
                engine.dispose()

            stack.callback(_drop)
            sources["postgresql"] = lambda: adp.read(
                pg_url, table=table, index_col="id", npartitions=_PARTITIONS
            )

        for name, make in sources.items():
            _measure(client, make, workers[:2], name)  # warm-up: imports, connections
            for count in (1, 2):
                seconds, seen, partitions = _measure(client, make, workers[:count], name)
                status = "ok" if seen == rows else f"read {seen} of {rows} rows"
                records.append(
                    {
                        "source": name,
                        "workers": count,
                        "rows": seen,
                        "partitions": partitions,
                        "seconds": round(seconds, 3),
                        "rows_per_s": round(seen / seconds) if seconds else None,
                        "status": status,
                    }
                )
        if problem is not None:
            for count in (1, 2):
                records.append(
                    {
                        "source": "postgresql",
                        "workers": count,
                        "rows": 0,
                        "partitions": 0,
                        "seconds": None,
                        "rows_per_s": None,
                        "status": f"unavailable: {problem}",
                    }
                )
    return pd.DataFrame.from_records(records)


def _click_command() -> Any:
    import click

    @click.command("io")
    @click.option(
        "--rows",
        default=200_000,
        show_default=True,
        type=click.IntRange(min=8),
        help="Rows per source.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
    def io(rows: int, as_json: bool) -> None:
        """Read throughput (rows/s) of Parquet on local disk and S3 (moto), SQLite and
        PostgreSQL, each with 1 and 2 workers, measured in one run."""
        table = bench_io(rows=rows)
        if as_json:
            click.echo(table.to_json(orient="records", indent=2))
        else:
            click.echo(table.to_string(index=False))

    return io


io = _click_command()
