"""The one error wrapper: one bounded line per error, a traceback only with ``--debug``, and
errors that are not ADP's (a full disk, a parser error, a file where a folder should be)
translated into ADP errors naming the file."""

from __future__ import annotations

import errno
import subprocess
import sys

import click
import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from click.testing import CliRunner

from adp.clitools import MESSAGE_LIMIT, fail_cleanly, translate_error
from adp.errors import AccessDeniedError, AdpError, DataError, SourceError, bounded, one_line

ADP = [sys.executable, "-m", "adp.cli"]


def test_bounded_lists_cut_a_million_names_to_one_short_line() -> None:
    text = bounded([f"feature_{i}" for i in range(1_500_000)])
    assert text.endswith("... and 1499990 more]")
    assert len(text) < 200
    assert bounded(["a", "b"]) == "['a', 'b']"
    assert "..." in bounded(["x" * 500])  # one huge name is cut too
    assert len(bounded(["x" * 500])) < 80


def test_one_line_collapses_and_cuts() -> None:
    assert one_line("a\n\n  b\tc") == "a b c"
    assert len(one_line("word " * 10_000, 100)) == 100


def test_full_disk_names_the_file() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/data/out/part.0.parquet")
    err = translate_error(exc)
    assert isinstance(err, SourceError)
    assert "no space left" in str(err) and "/data/out/part.0.parquet" in str(err)


def test_parent_that_is_a_file_and_denied_permission_are_named(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        (blocker / "out.parquet").write_text("x")
    err = translate_error(info.value)
    assert "is a file, not a folder" in str(err) and str(blocker) in str(err)
    denied = translate_error(PermissionError(13, "Forbidden", "s3://bucket/key"))
    assert isinstance(denied, AccessDeniedError) and "s3://bucket/key" in str(denied)


def test_csv_parser_errors_are_one_line_naming_the_source(tmp_path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(Exception) as info:
        pd.read_csv(extra)
    err = translate_error(info.value, str(extra))
    assert isinstance(err, DataError)
    assert str(extra) in str(err) and "Expected 2 fields" in str(err)
    assert "\n" not in str(err)

    cell = tmp_path / "cell.csv"
    cell.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(30_000)) + "oops,1\n")
    with pytest.raises(ValueError) as info:
        dd.read_csv(str(cell), blocksize=100_000).sum().compute(scheduler="sync")
    err = translate_error(info.value, str(cell))
    assert isinstance(err, DataError)
    assert "columns ['a']" in str(err) and str(cell) in str(err)
    assert "\n" not in str(err)


def test_unexpected_errors_point_to_debug() -> None:
    err = translate_error(RuntimeError("boom\nwith\nlines"))
    assert isinstance(err, AdpError)
    assert "unexpected RuntimeError" in str(err) and "--debug" in str(err)


@click.command()
@click.argument("what")
@fail_cleanly
def _command(what: str) -> None:
    if what == "adp":
        raise DataError("column 'x' is missing " + "y" * 5000)
    if what == "usage":
        raise click.UsageError("bad usage")
    raise KeyError("raw")


def test_fail_cleanly_prints_one_bounded_line_and_exits_1() -> None:
    runner = CliRunner()
    result = runner.invoke(_command, ["adp"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: column 'x' is missing")
    assert len(lines[0]) <= len("error: ") + MESSAGE_LIMIT
    result = runner.invoke(_command, ["raw"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unexpected KeyError" in result.output
    # click's own usage errors keep click's format and exit code
    assert runner.invoke(_command, ["usage"]).exit_code == 2


def test_traceback_only_with_debug() -> None:
    with dask.config.set({"adp.debug": True}):
        result = CliRunner().invoke(_command, ["raw"])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "unexpected KeyError" in result.output


@pytest.mark.slow
def test_adp_debug_flag_on_the_main_group() -> None:
    ref = "m1@99999999999999999999"
    plain = subprocess.run(
        [*ADP, "models", "show", ref], capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 1
    assert plain.stderr.strip() == (
        f"error: model reference '{ref}': version 99999999999999999999 is out of range"
    )
    debug = subprocess.run(
        [*ADP, "--debug", "models", "show", ref], capture_output=True, text=True, timeout=60
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "out of range" in debug.stderr
