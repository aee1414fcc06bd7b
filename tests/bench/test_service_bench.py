"""``adp bench service`` (issue 12, "load"), small: a real ``adp serve`` subprocess takes
submissions at a fixed rate, half of them invalid; every accepted job must end, and end
well, and every invalid spec must be refused 422 naming its field. The latency and memory
figures are the command's to report, not this test's to judge."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from adp.bench.cli import bench
from adp.bench.service_load import INVALID, bench_service, plan
from adp.jobs.spec import JobSpec


def test_the_plan_is_half_invalid_and_covers_every_case(tmp_path: Path) -> None:
    planned = plan(2 * len(INVALID), tmp_path / "lake", tmp_path / "out")
    valid = [s for s in planned if s.field is None]
    assert len(valid) == len(INVALID)
    assert Counter(s.case for s in planned if s.field) == {name: 1 for name, _, _ in INVALID}
    for s in valid:  # a valid spec validates, and each writes its own output
        assert JobSpec.from_dict(s.spec).output is not None
    assert len({s.spec["output"]["uri"] for s in valid}) == len(valid)
    spoiled = {s.case: s.spec for s in planned}
    assert "uri" not in spoiled["missing_source_uri"]["source"]
    assert spoiled["bool_for_int"]["fit"]["sample_rows"] is True
    assert "output" not in spoiled["missing_output"]


def test_the_share_of_invalid_specs_is_spread_evenly(tmp_path: Path) -> None:
    kinds = ["v" if s.field is None else "i" for s in plan(16, tmp_path, tmp_path, 0.75)]
    assert "".join(kinds) == "viii" * 4
    assert all(s.field is None for s in plan(5, tmp_path, tmp_path, 0.0))


def test_the_command_is_registered() -> None:
    answer = CliRunner().invoke(bench, ["service", "--help"])
    assert answer.exit_code == 0, answer.output
    assert "--json-out" in answer.output and "--rate" in answer.output


@pytest.mark.slow
def test_every_job_ends_and_every_invalid_spec_is_refused_naming_its_field(
    tmp_path: Path,
) -> None:
    jobs = len(INVALID) + 4  # every invalid case once, and 4 valid jobs
    result = bench_service(
        tmp_path, jobs=jobs, rate=10, invalid_share=0.75, warmup=False, partitions=2, rows=500
    )

    assert result["submitted"] == jobs
    assert result["accepted"] + result["rejected"] == jobs, result["other_status"]
    assert result["unexpected"] == []
    for case, tally in result["cases"].items():
        assert tally["as_expected"] == tally["sent"], case
    assert result["rejected"] == result["rejected_with_field_named"] == len(INVALID)
    assert result["accepted"] == result["terminal"] == 4
    assert result["states"] == {"succeeded": result["accepted"]}
    assert result["stop"]["sigkilled"] is False
    assert result["stop"]["children_left"] == 0
    assert result["targets"]["all_terminal"] and result["targets"]["valid_accepted"]
    assert result["targets"]["invalid_rejected_with_field_named"]
    # every valid job committed its own output
    assert len(list((tmp_path / "out").glob("job-*/_adp_manifest.json"))) == result["accepted"]
