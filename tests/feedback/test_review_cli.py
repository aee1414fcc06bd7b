"""``adp review`` as an analyst runs it, on a job's real output folder: next, label, list,
learn; the learned version then scores in a job like any registered model. A user's
mistake is one error line, never a traceback."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from adp.cli import main


def _run_job(client: Any, source: Path, out: Path, model: str) -> Any:
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    spec = JobSpec.model_validate(
        {
            "name": "review-test",
            "source": {"uri": str(source), "key": ["id"]},
            "detector": {"model": model},
            "explain": {"top_k": 2},
            "output": {"uri": str(out), "mode": "overwrite"},
        }
    )
    return run_job(spec, client=client, show_progress=False)


def _adp(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_review_label_learn_and_score_again(
    client: Any, tmp_path: Path, keyed: pd.DataFrame, ensemble: Any
) -> None:
    from adp.models.api import register

    name = f"review{uuid.uuid4().hex[:8]}"
    register(ensemble, name)
    source = tmp_path / "source"
    source.mkdir()
    keyed.drop(columns="label").to_parquet(source / "part.parquet")
    out = tmp_path / "scores"
    _run_job(client, source, out, f"{name}@1")

    shown = _adp(
        "review",
        "next",
        "--model",
        f"{name}@1",
        "--output",
        str(out),
        "--strategy",
        "top",
        "-n",
        "3",
        "--json",
        "--scheduler",  # computed on the cluster, connected as every command connects
        client.scheduler.address,
    )
    assert shown.exit_code == 0, shown.output
    rows = [json.loads(line) for line in shown.output.splitlines()]
    scores = pd.read_parquet(out)
    assert [r["id"] for r in rows] == scores.nlargest(3, "score")["id"].tolist()
    assert all(len(r["top_features"]) == 2 for r in rows)

    labelled = _adp(
        "review",
        "label",
        "--model",
        f"{name}@1",
        "--key",
        rows[0]["row_key"],
        "--label",
        "anomaly",
        "--note",
        "seen before",
    )
    assert labelled.exit_code == 0 and "as anomaly" in labelled.output
    listed = _adp("review", "list", "--model", name, "--json")
    records = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["row_key"], r["label"], r["version"], r["note"]) for r in records] == [
        (rows[0]["row_key"], "anomaly", 1, "seen before")
    ]
    again = _adp(
        "review",
        "next",
        "--model",
        f"{name}@1",
        "--output",
        str(out),
        "--strategy",
        "top",
        "-n",
        "3",
        "--json",
    )
    assert rows[0]["row_key"] not in again.output  # labelled rows are not offered again

    # Answer the 60 most uncertain rows from the truth, learn, and score with the new version.
    batch = _adp(
        "review",
        "next",
        "--model",
        f"{name}@1",
        "--output",
        str(out),
        "--strategy",
        "uncertain",
        "-n",
        "60",
        "--json",
    )
    truth = keyed.set_index("id")["label"]
    from adp.feedback.labels import LabelStore

    with LabelStore() as store:
        store.add_many(
            f"{name}@1",
            [
                (r["row_key"], "anomaly" if truth[r["id"]] else "normal")
                for r in map(json.loads, batch.output.splitlines())
            ],
        )
    learned = _adp(
        "review",
        "learn",
        "--model",
        f"{name}@1",
        "--source",
        str(source),
        "--method",
        "semi_supervised",
    )
    assert learned.exit_code == 0, learned.output
    assert f"registered {name}@2 (semi_supervised) from {name}@1" in learned.output
    result = _run_job(client, source, tmp_path / "learned", f"{name}@2")
    assert result.rows == len(keyed) and result.detector == "semi_supervised"
    assert result.threshold == 0.0  # the classifier's boundary
    shown = _adp("models", "show", f"{name}@2", "--json")
    assert json.loads(shown.output)["parent"] == f"{name}@1"


def test_mistakes_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    cases = [
        (
            ["review", "label", "--model", "m@1", "--key", "nope", "--label", "normal"],
            "is not JSON",
        ),
        (["review", "next", "--model", "m@1", "--output", str(tmp_path)], "is not a scored output"),
        (["review", "next", "--model", "bad/name", "--output", str(tmp_path)], "model name"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
        assert result.output.count("\n") <= 2
