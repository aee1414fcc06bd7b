"""Anchor checkpoints are write-once by construction: created with a conditional PUT
(``If-None-Match: *``) on S3 (moto's server) and an exclusive create in a folder, so an
ADP writer never replaces one that exists, whatever it believed about its existence."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from adp.observe.anchor import Anchor


@pytest.fixture(params=["folder", "s3"])
def anchor(request: pytest.FixtureRequest, tmp_path: Path) -> Anchor:
    if request.param == "folder":
        return Anchor(str(tmp_path / "anchor"))
    s3 = request.getfixturevalue("s3")
    return Anchor(f"s3://{s3.bucket('once')}/audit", s3.storage_options)


def _entry(seq: int, hash_: str) -> dict[str, Any]:
    return {"log": "log1", "seq": seq, "hash": hash_, "time": "t", "sig": "s", "key": "k"}


def _stored(anchor: Anchor, seq: int) -> dict[str, Any]:
    anchor.fs.invalidate_cache()
    return dict(json.loads(anchor.fs.cat_file(anchor._path("log1", seq))))


def test_put_keeps_a_checkpoint_that_appeared_after_any_check(
    anchor: Anchor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer's object lands between a writer's look and its write (or a listing
    cache says "absent"): the write is refused by the store, and the first object stays."""
    anchor.put(_entry(1, "first"))
    monkeypatch.setattr(anchor.fs, "exists", lambda *args, **kwargs: False)
    anchor.put(_entry(1, "second"))
    monkeypatch.undo()
    assert _stored(anchor, 1)["hash"] == "first"
    assert [e["hash"] for e in anchor.entries("log1")] == ["first"]


def test_create_never_replaces_an_object(anchor: Anchor) -> None:
    path = anchor._path("log1", 7)
    anchor.create(path, b'{"seq": 7}')
    with pytest.raises(FileExistsError):
        anchor.create(path, b'{"seq": 7, "forged": true}')
    assert _stored(anchor, 7) == {"seq": 7}


def test_of_racing_writers_of_one_checkpoint_exactly_one_creates_it(anchor: Anchor) -> None:
    path = anchor._path("log1", 9)
    racers = 8
    barrier = threading.Barrier(racers)
    won: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []

    def write(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            anchor.create(path, json.dumps({"seq": 9, "writer": i}).encode())
            won.append(i)
        except FileExistsError:
            refused.append(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(won) == 1 and len(refused) == racers - 1
    assert _stored(anchor, 9)["writer"] == won[0]
