"""The label store on SQLite and PostgreSQL: answers with provenance, the latest one
counting, every label audited (and none stored without its audit record)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from adp.errors import AuditError, ConfigError, DataError
from adp.feedback.keys import key_text, key_texts, parse_key
from adp.feedback.labels import LabelStore, label_set_sha256


def test_labels_keep_who_when_and_note_and_the_latest_answer_counts(store: Any) -> None:
    first = store.add("sensors@3", {"sensor": "a7", "ts": 5}, "anomaly", who="alice", note="valve")
    store.add("sensors", '{"sensor": "b2", "ts": 9}', "normal", who="bob")
    store.add("sensors@4", '{"sensor":"a7","ts":5}', "normal", who="carol")  # same row, relabelled

    assert (first.model, first.version, first.who, first.note) == ("sensors", 3, "alice", "valve")
    assert first.row_key == '{"sensor":"a7","ts":5}'
    latest = {lab.row_key: lab for lab in store.labels("sensors")}
    assert latest['{"sensor":"a7","ts":5}'].label == "normal"
    assert latest['{"sensor":"a7","ts":5}'].who == "carol"
    assert latest['{"sensor":"a7","ts":5}'].version == 4
    assert latest['{"sensor":"b2","ts":9}'].version is None
    history = store.labels("sensors", history=True)
    assert [(lab.who, lab.label) for lab in history] == [
        ("alice", "anomaly"),
        ("bob", "normal"),
        ("carol", "normal"),
    ]
    assert history[0].created_at.tzinfo is not None
    assert store.counts("sensors") == {"anomaly": 0, "normal": 2, "unsure": 0}
    assert store.labels("other") == []


def test_unsure_rows_are_reviewed_but_not_targets(store: Any) -> None:
    store.add_many("m", [({"id": 1}, "unsure"), ({"id": 2}, "anomaly")], who="alice")
    assert store.reviewed_keys("m") == {'{"id":1}', '{"id":2}'}
    frame = store.frame("m")
    targets = dict(zip(frame["row_key"], frame["target"], strict=True))
    assert np.isnan(targets['{"id":1}'])
    assert targets['{"id":2}'] == 1


def test_every_label_is_audited_with_the_analysts_identity(store: Any, audit_log: Any) -> None:
    store.add_many("m@2", [({"id": 1}, "anomaly"), ({"id": 2}, "normal")], who="alice", note="x")
    records = [r for r in audit_log.records() if r.event_type == "feedback.label"]
    assert [r.identity for r in records] == ["alice", "alice"]
    assert {r.resource for r in records} == {"models/m@2"}
    details = [json.loads(r.details) for r in records]
    assert details == [
        {"row": '{"id":1}', "label": "anomaly", "note": True},
        {"row": '{"id":2}', "label": "normal", "note": True},
    ]
    assert audit_log.verify().ok


class _BrokenAudit:
    def append(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditError("the audit database is gone")

    def close(self) -> None:
        pass


def test_a_label_whose_audit_record_fails_is_not_stored(tmp_path: Any) -> None:
    labels = LabelStore(f"sqlite:///{tmp_path / 'l.db'}", audit_log=_BrokenAudit())
    with pytest.raises(AuditError):
        labels.add("m", {"id": 1}, "anomaly", who="alice")
    assert labels.labels("m") == []
    labels.close()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.add("m", {"id": 1}, "maybe"), "not one of anomaly, normal, unsure"),
        (lambda s: s.add("m", "not json", "normal"), "is not JSON"),
        (lambda s: s.add("m", "[1, 2]", "normal"), "JSON object"),
        (lambda s: s.add("bad/name", {"id": 1}, "normal"), "model name"),
        (lambda s: s.add("m@latest", {"id": 1}, "normal"), "name@<number>"),
        (lambda s: s.add("m@2", {"id": 1}, "normal", version=3), "disagree"),
        (lambda s: s.add("m", {"id": 1}, "normal", who=""), "who must name"),
        (lambda s: s.add("m", {"id": 1}, "normal", note="x" * 2001), "2000"),
        (lambda s: s.add("m", {"id": [1]}, "normal"), "cannot identify a row"),
        (lambda s: s.add("m", {"id": 1}, "normal", key_columns=["id", "ts"]), "key columns"),
    ],
)
def test_bad_labels_are_refused_naming_the_fix(store: Any, call: Any, message: str) -> None:
    with pytest.raises((ConfigError, DataError), match=message):
        call(store)
    assert store.labels() == []


def test_the_label_set_hash_covers_keys_and_answers_only(store: Any) -> None:
    a = store.add_many("m", [({"id": 1}, "anomaly"), ({"id": 2}, "normal")], who="alice")
    b = store.add_many("n", [({"id": 2}, "normal"), ({"id": 1}, "anomaly")], who="bob")
    assert label_set_sha256(a) == label_set_sha256(b)
    flipped = store.add("o", {"id": 1}, "normal", who="bob")
    assert label_set_sha256([flipped, a[1]]) != label_set_sha256(a)


def test_the_store_defaults_to_the_state_directory(tmp_path: Any, audit_log: Any) -> None:
    import dask.config

    with dask.config.set({"adp.state-dir": str(tmp_path), "adp.feedback.table-prefix": "x_"}):
        labels = LabelStore(audit_log=audit_log)
        labels.add("m", {"id": 1}, "anomaly", who="alice")
        labels.close()
    assert (tmp_path / "feedback.db").exists()
    assert "x_labels" in repr(labels)


def test_key_texts_match_one_key_text_per_row() -> None:
    frame = pd.DataFrame(
        {
            "sensor": ["a", "b"],
            "ts": pd.to_datetime(["2026-03-01T12:00:00", "2026-03-02T00:00:00"]),
            "n": np.array([3, 4], dtype=np.int32),
            "x": [1.0, 2.5],
        }
    )
    texts = key_texts(frame, ["sensor", "ts", "n", "x"]).tolist()
    assert texts[0] == '{"sensor":"a","ts":"2026-03-01T12:00:00","n":3,"x":1}'
    assert texts[1] == key_text(
        {"x": 2.5, "ts": "2026-03-02T00:00:00", "n": 4, "sensor": "b"}, ["sensor", "ts", "n", "x"]
    )
    assert parse_key('{"sensor": "a", "ts": "2026-03-01T12:00:00", "n": 3, "x": 1.0}') == texts[0]
