"""Rows never vanish: every data file read is checked for the rows its footer promised, and a
page that cannot be decoded stops the read (and the job) naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import adp
from adp.errors import DataError
from adp.io.footers import check_rows
from adp.io.parts import WrittenPart, make_folder, read_staged, staged_frame, write_part


def _lake(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(4000), "x": rng.normal(size=4000)})
    frame["y"] = rng.normal(size=4000)
    for i in range(4):
        frame.iloc[i * 1000 : (i + 1) * 1000].to_parquet(
            folder / f"part-{i}.parquet", row_group_size=500, index=False
        )
    return folder


def _corrupt_a_data_page(path: Path, row_group: int = 1, column: int = 1) -> None:
    """Overwrite the header of one data page; the footer stays intact."""
    before = pq.read_metadata(path)
    chunk = before.row_group(row_group).column(column)
    offset = chunk.dictionary_page_offset or chunk.data_page_offset
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    after = pq.read_metadata(path)
    assert after.num_rows == before.num_rows and after.num_row_groups == before.num_row_groups


def test_a_corrupt_data_page_with_an_intact_footer_names_the_file(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    bad = lake / "part-2.parquet"
    _corrupt_a_data_page(bad)
    ddf = adp.read(str(lake))  # the footers are fine: the check before reading passes
    with pytest.raises(DataError) as err:
        ddf.compute()
    message = str(err.value)
    assert str(bad) in message and "cannot be decoded" in message and "\n" not in message
    with pytest.raises(DataError, match="part-2.parquet"):
        adp.read(str(lake), columns=["x"], filters=[("id", ">=", 0)]).compute()
    # the other files read whole, with row filters applied after the count
    good = adp.read(str(lake / "part-1.parquet"), filters=[("id", "<", 1100)]).compute()
    assert sorted(good["id"]) == list(range(1000, 1100))


def test_a_job_over_a_corrupt_file_stops_naming_it_and_writes_nothing(client, tmp_path) -> None:
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    lake = _lake(tmp_path / "lake")
    _corrupt_a_data_page(lake / "part-3.parquet", row_group=0, column=2)
    out = tmp_path / "out" / "scores"
    spec = {
        "name": "rows",
        "source": {"uri": str(lake), "key": ["id"]},
        "detector": {"name": "hbos", "params": {"contamination": 0.05}},
        "output": {"uri": str(out)},
    }
    with pytest.raises(DataError, match=r"part-3\.parquet' cannot be decoded"):
        run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    assert not out.exists()
    assert not list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else True


def test_decoded_rows_are_compared_with_what_was_promised(tmp_path) -> None:
    check_rows("f.parquet", 10, 10)
    with pytest.raises(
        DataError, match=r"'f.parquet' decoded to 9 rows but its footer promises 10"
    ):
        check_rows("f.parquet", 9, 10)
    part = write_part(pd.DataFrame({"score": np.arange(5.0)}), str(tmp_path / "p.parquet"))
    assert len(read_staged(part.path, rows=part.rows)) == 5
    lying = WrittenPart(part.path, part.rows + 1, part.bytes)
    frame = staged_frame([lying], pd.DataFrame({"score": np.empty(0)}))
    with pytest.raises(DataError, match=r"p.parquet' decoded to 5 rows but its footer promises 6"):
        frame.compute(scheduler="sync")


def test_adp_read_of_an_adp_output_reads_exactly_the_files_its_manifest_names(tmp_path) -> None:
    from adp.io.sinks import FolderSink, manifest_for

    out = tmp_path / "scores"
    sink = FolderSink(str(out))
    with sink.session():
        final = sink._open().path("final")
        make_folder(final)
        parts = [
            write_part(
                pd.DataFrame({"id": range(i * 10, i * 10 + 10)}), f"{final}/part.{i}.parquet"
            )
            for i in range(2)
        ]
        sink.commit(parts, manifest_for(parts))
    pd.DataFrame({"id": [999]}).to_parquet(out / "stray.parquet")  # not the manifest's
    assert sorted(adp.read(str(out)).compute(scheduler="sync")["id"]) == list(range(20))
    (out / "part.1.parquet").unlink()
    with pytest.raises(DataError, match=r"incomplete: 1 of the 2 files"):
        adp.read(str(out))


def test_a_file_removed_after_the_listing_is_named_as_gone_not_corrupt(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    ddf = adp.read(str(lake))  # listed and footers read
    gone = lake / "part-1.parquet"
    gone.rename(tmp_path / "elsewhere.parquet")
    with pytest.raises(DataError) as err:
        ddf.compute()
    message = str(err.value)
    assert str(gone) in message and "no longer exists" in message
    assert "corrupt" not in message and "\n" not in message
