"""The SQL sink of ``adp bench stream --sql URL``: a table of the bench's own beside the
output stream, its rows counted after the run and the table dropped, and the CPU time a
PostgreSQL server on this machine spent."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa

from adp.db import connect_error, safe_url
from adp.stream.sinks import SqlSink

__all__ = ["BenchTable", "postgres_cpu"]

_log = logging.getLogger(__name__)
_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


class BenchTable:
    """A fresh results table ``adp_bench_<hex>`` at ``url`` and the sink writing to it.

    Parameters
    ----------
    url : str
        SQLAlchemy URL of a PostgreSQL or SQLite database.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.table = f"adp_bench_{uuid.uuid4().hex[:8]}"
        self.sink = SqlSink(url, self.table, url_field="--sql")

    def __repr__(self) -> str:
        return f"BenchTable({safe_url(self.url)!r}, {self.table!r})"

    def rows(self) -> int:
        """Rows the table holds now."""
        with self.sink.engine.connect() as conn:
            return int(conn.execute(sa.text(f'SELECT count(*) FROM "{self.table}"')).scalar_one())

    def drop(self) -> None:
        """Drop the table, when it was created; a database that cannot be reached is
        logged, not raised (the bench's own error, if any, is the one to see)."""
        try:
            sa.Table(self.table, sa.MetaData()).drop(self.sink.engine, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            _log.warning(
                "could not drop the bench's table %r: %s", self.table, connect_error(self.url, exc)
            )
        finally:
            self.sink.close()


def postgres_cpu(url: str) -> float | None:
    """CPU seconds so far of the ``postgres`` processes on this machine, when ``url`` is a
    PostgreSQL server on it (``None`` otherwise, or when they cannot be read)."""
    import psutil

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.host not in _LOCAL_HOSTS:
        return None
    total, seen = 0.0, False
    for process in psutil.process_iter(["name", "cpu_times"]):
        times: Any = process.info.get("cpu_times")
        if process.info.get("name") == "postgres" and times is not None:
            total += float(times.user + times.system)
            seen = True
    return total if seen else None
