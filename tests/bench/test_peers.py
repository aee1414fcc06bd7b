"""``adp bench scoring --against isotree,h2o``: the option, the skips and the peer runners.

CI has neither isotree nor h2o (the ``bench`` extra is not in ``dev``), so the runners are
also driven through small stand-in modules that record what they are asked; the real
packages are run where they are installed.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from adp.bench import peers, scoring
from adp.bench.peers import (
    INSTALL_HINT,
    JAVA_HINT,
    PeerRun,
    draw_sample,
    parse_peers,
    run_h2o,
    run_isotree,
    run_peer,
)

ROWS, FEATURES, SAMPLE = 20_000, 4, 3_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scoring.make_lake(ROWS, FEATURES, tmp_path_factory.mktemp("lake"), file_rows=5_000)


@pytest.fixture
def no_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets past its option checks (no lake, no cluster)."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the usage error must come before any lake or cluster work")

    monkeypatch.setattr(scoring, "bench_scoring", forbidden)
    monkeypatch.setattr(scoring, "make_lake", forbidden)
    monkeypatch.setattr(scoring, "run_adp", forbidden)


# --- the option ------------------------------------------------------------------------


def test_parse_peers_reads_a_comma_separated_list() -> None:
    assert parse_peers(" isotree, H2O ,isotree,") == ("isotree", "h2o")
    assert parse_peers("h2o,isotree") == ("h2o", "isotree")
    assert parse_peers(None) == parse_peers("") == ()
    with pytest.raises(ValueError, match="known peers are isotree, h2o"):
        parse_peers("isotree,sklearn")


def test_an_unknown_peer_is_a_usage_error_listing_the_known_ones(no_bench, tmp_path) -> None:
    result = CliRunner().invoke(
        scoring.scoring, ["--against", "isotree,eif", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--against'" in result.output
    assert "'eif'" in result.output and "isotree, h2o" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_peers_of_another_detector_are_a_usage_error_naming_the_option(no_bench, tmp_path) -> None:
    result = CliRunner().invoke(
        scoring.scoring,
        ["--detector", "ecod", "--against", "isotree", "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 2, result.output
    assert "'--against'" in result.output
    assert "isolation_forest" in result.output and "ecod" in result.output
    assert list(tmp_path.iterdir()) == []


def test_bench_scoring_refuses_peers_of_another_detector(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(scoring, "make_lake", lambda *a: pytest.fail("no lake before the check"))
    with pytest.raises(ValueError, match="only for the isolation_forest"):
        scoring.bench_scoring(1000, 2, "hbos", data_dir=tmp_path, against=("h2o",))


@pytest.mark.parametrize(
    ("args", "expected", "pyod"),
    [
        ([], (), True),
        (["--against", "isotree,h2o"], ("isotree", "h2o"), True),
        (["--against", "h2o", "--no-pyod"], ("h2o",), False),
    ],
)
def test_the_option_reaches_the_bench(monkeypatch, tmp_path, args, expected, pyod) -> None:
    seen: dict[str, Any] = {}

    def fake(*a: Any, **kw: Any) -> dict[str, Any]:
        seen["args"], seen["pyod"] = a, kw["pyod"]
        return {"against": list(a[-1])}

    monkeypatch.setattr(scoring, "bench_scoring", fake)
    result = CliRunner().invoke(
        scoring.scoring, [*args, "--rows", "1000", "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert seen["args"][-1] == expected
    assert seen["pyod"] is pyod
    assert json.loads(result.output) == {"against": list(expected)}


# --- the report ------------------------------------------------------------------------


def _run(seconds: float, score: float, rows: int = 1000) -> scoring.Run:
    return scoring.Run(seconds, rows / seconds, score, {"process": 1})


def test_the_report_gets_each_peer_and_its_speedup(monkeypatch, tmp_path) -> None:
    """bench_scoring wires the peers after ADP: figures, speedup over ADP on the most
    workers, a skipped peer with its reason and no speedup (the systems are stubs)."""
    monkeypatch.setattr(scoring, "make_lake", lambda rows, features, folder: tmp_path)
    monkeypatch.setattr(scoring, "run_pyod", lambda *a: _run(8.0, 6.0))
    monkeypatch.setattr(scoring, "measure_limit", lambda *a: scoring.Limit(0.5, 1.0, 0.5))
    monkeypatch.setattr(scoring, "run_adp", lambda lake, d, s, w: (_run(4.0 / w, 2.0 / w),) * 2)
    asked: list[tuple[str, Path, int]] = []

    def fake_peer(name: str, lake: Path, sample_rows: int) -> dict[str, Any]:
        asked.append((name, lake, sample_rows))
        if name == "h2o":
            return {"skipped": JAVA_HINT}
        return {"seconds": 10.0, "rows_per_second": 100.0, "score_seconds": 7.0}

    monkeypatch.setattr(scoring, "run_peer", fake_peer)
    report = scoring.bench_scoring(
        1000, 4, "isolation_forest", (1, 2), 500, tmp_path, ("isotree", "h2o")
    )
    assert asked == [("isotree", tmp_path, 500), ("h2o", tmp_path, 500)]
    assert report["isotree"]["seconds"] == 10.0
    assert report["speedup_vs_isotree"] == 5.0  # 10 s over ADP's 2 s on 2 workers
    assert report["speedup_vs_pyod"] == 4.0
    assert report["h2o"] == {"skipped": JAVA_HINT}
    assert "speedup_vs_h2o" not in report
    text = scoring.table(report)
    assert "| ADP, 2 workers | 2.0 |" in text
    assert "| PyOD, one process | 8.0 |" in text
    assert f"| h2o: {JAVA_HINT} |" in text
    assert "isotree 5.0x" in text and "pyod 4.0x" in text


def test_no_peer_is_run_without_the_option(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(scoring, "make_lake", lambda rows, features, folder: tmp_path)
    monkeypatch.setattr(scoring, "run_pyod", lambda *a: _run(8.0, 6.0))
    monkeypatch.setattr(scoring, "measure_limit", lambda *a: scoring.Limit(0.5, 1.0, 0.5))
    monkeypatch.setattr(scoring, "run_adp", lambda lake, d, s, w: (_run(4.0 / w, 2.0 / w),) * 2)
    monkeypatch.setattr(scoring, "run_peer", lambda *a: pytest.fail("no peer was asked for"))
    report = scoring.bench_scoring(1000, 4, "isolation_forest", (1, 2), 500, tmp_path)
    assert not any(k in report for k in ("isotree", "h2o", "speedup_vs_isotree"))


# --- the skips -------------------------------------------------------------------------


def _java_home(tmp_path: Path) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    return home


@pytest.mark.parametrize("name", ["isotree", "h2o"])
def test_a_missing_package_is_skipped_with_one_line(monkeypatch, tmp_path, name) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # "import NAME" raises ImportError
    monkeypatch.setenv("JAVA_HOME", str(_java_home(tmp_path)))
    report = run_peer(name, tmp_path, 100)
    assert report == {"skipped": f"{name} is not installed: {INSTALL_HINT}"}
    assert INSTALL_HINT == "pip install 'adp[bench]'"


def test_h2o_without_java_is_skipped_naming_the_debian_package(monkeypatch, tmp_path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert run_peer("h2o", tmp_path, 100) == {"skipped": JAVA_HINT}
    assert "openjdk-17-jre-headless" in JAVA_HINT and "\n" not in JAVA_HINT
    # a JAVA_HOME without bin/java does not count either; one with it does
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    assert run_peer("h2o", tmp_path, 100) == {"skipped": JAVA_HINT}
    monkeypatch.setenv("JAVA_HOME", str(_java_home(tmp_path)))
    monkeypatch.setitem(sys.modules, "h2o", None)
    assert run_peer("h2o", tmp_path, 100) == {"skipped": f"h2o is not installed: {INSTALL_HINT}"}


def test_a_skipped_peer_prints_no_traceback_through_the_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "isotree", None)
    monkeypatch.setattr(scoring, "make_lake", lambda rows, features, folder: tmp_path)
    monkeypatch.setattr(scoring, "run_pyod", lambda *a: _run(8.0, 6.0))
    monkeypatch.setattr(scoring, "measure_limit", lambda *a: scoring.Limit(0.5, 1.0, 0.5))
    monkeypatch.setattr(scoring, "run_adp", lambda lake, d, s, w: (_run(4.0 / w, 2.0 / w),) * 2)
    result = CliRunner().invoke(scoring.scoring, ["--against", "isotree"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"| isotree: isotree is not installed: {INSTALL_HINT} | - | - | - |" in result.output


# --- the runners, on stand-ins (everywhere) --------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []


def _fake_isotree(recorder: _Recorder) -> types.ModuleType:
    from sklearn.ensemble import IsolationForest as SkForest

    class IsolationForest:
        def __init__(self, **kwargs: Any) -> None:
            recorder.calls.append(("init", kwargs))
            self.forest = SkForest(n_estimators=10, max_samples=256, random_state=0)

        def fit(self, X: np.ndarray) -> IsolationForest:
            recorder.calls.append(("fit", X.copy()))
            self.forest.fit(X)
            return self

        def predict(self, X: np.ndarray) -> np.ndarray:
            recorder.calls.append(("predict", len(X)))
            return -self.forest.score_samples(X)

    module = types.ModuleType("isotree")
    module.IsolationForest = IsolationForest  # type: ignore[attr-defined]
    module.__version__ = "0.0-stand-in"  # type: ignore[attr-defined]
    return module


def test_run_isotree_fits_pyods_sample_and_scores_every_row(monkeypatch, lake) -> None:
    recorder = _Recorder()
    monkeypatch.setitem(sys.modules, "isotree", _fake_isotree(recorder))
    run = run_isotree(lake, SAMPLE, seed=0)
    assert isinstance(run, PeerRun)
    inits = [c[1] for c in recorder.calls if c[0] == "init"]
    assert inits and all(
        kw == {"ntrees": 100, "sample_size": 256, "nthreads": 2, "random_seed": 0} for kw in inits
    )
    fits = [c[1] for c in recorder.calls if c[0] == "fit"]
    assert len(fits) == 2 and len(fits[0]) == 1000  # the untimed warm-up, then the sample
    X = pd.read_parquet(lake).to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(fits[1], draw_sample(X, SAMPLE, 0))
    assert [c[1] for c in recorder.calls if c[0] == "predict"] == [1000, ROWS]
    assert 0 < run.score_seconds < run.seconds
    assert run.rows_per_second == ROWS / run.seconds
    assert run.peak_rss_bytes["process"] > 10_000_000
    assert (run.version, run.threads, run.parts) == ("0.0-stand-in", 2, {})


def test_pyod_and_the_limit_fit_the_same_sample_as_the_peers(lake) -> None:
    X = pd.read_parquet(lake).to_numpy(dtype=np.float64)
    rng = np.random.default_rng(0)  # the draw run_pyod made before it used draw_sample
    expected = X[np.sort(rng.choice(len(X), size=SAMPLE, replace=False))]
    np.testing.assert_array_equal(draw_sample(X, SAMPLE, 0), expected)
    assert len(draw_sample(X, 10 * ROWS, 0)) == ROWS


class _FakeFrame:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __getitem__(self, column: str) -> _FakeFrame:
        return _FakeFrame(self.frame[[column]])

    def as_data_frame(self) -> pd.DataFrame:
        return self.frame


def _fake_h2o(recorder: _Recorder, fail_predict: bool = False) -> types.ModuleType:
    from sklearn.ensemble import IsolationForest as SkForest

    class H2OIsolationForestEstimator:
        def __init__(self, **kwargs: Any) -> None:
            recorder.calls.append(("estimator", kwargs))

        def train(self, x: list[str], training_frame: _FakeFrame) -> None:
            recorder.calls.append(("train", (x, training_frame.frame.to_numpy())))
            self.forest = SkForest(n_estimators=10, max_samples=256, random_state=0)
            self.forest.fit(training_frame.frame.to_numpy())

        def predict(self, frame: _FakeFrame) -> _FakeFrame:
            if fail_predict:
                raise RuntimeError("the JVM ran out of memory\non two lines")
            scores = -self.forest.score_samples(frame.frame.to_numpy())
            return _FakeFrame(pd.DataFrame({"predict": scores, "mean_length": scores}))

    class Cluster:
        def shutdown(self) -> None:
            recorder.calls.append(("shutdown", None))

    h2o = types.ModuleType("h2o")

    def init(**kwargs: Any) -> None:
        print("Warning: Your H2O cluster version is (3 months) old.")  # as h2o does
        recorder.calls.append(("init", kwargs))

    h2o.init = init  # type: ignore[attr-defined]
    h2o.no_progress = lambda: None  # type: ignore[attr-defined]
    h2o.H2OFrame = _FakeFrame  # type: ignore[attr-defined]
    h2o.cluster = Cluster  # type: ignore[attr-defined]
    h2o.__version__ = "3.0-stand-in"  # type: ignore[attr-defined]
    estimators = types.ModuleType("h2o.estimators")
    estimators.H2OIsolationForestEstimator = H2OIsolationForestEstimator  # type: ignore[attr-defined]
    h2o.estimators = estimators  # type: ignore[attr-defined]
    return h2o


def _install_h2o(monkeypatch, tmp_path, module: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, "h2o", module)
    monkeypatch.setitem(sys.modules, "h2o.estimators", module.estimators)
    monkeypatch.setenv("JAVA_HOME", str(_java_home(tmp_path)))


def test_run_h2o_times_its_parts_and_shuts_the_jvm_down(
    monkeypatch, tmp_path, lake, capsys
) -> None:
    recorder = _Recorder()
    _install_h2o(monkeypatch, tmp_path, _fake_h2o(recorder))
    run = run_h2o(lake, SAMPLE, seed=0)
    assert capsys.readouterr().out == ""  # nothing of h2o's in the report (--json parses)
    init = dict(recorder.calls)["init"]
    assert init["nthreads"] == 2 and init["verbose"] is False
    assert init["ip"] == "127.0.0.1" and 1024 <= init["port"] < 65535
    assert dict(recorder.calls)["estimator"] == {"ntrees": 100, "sample_size": 256, "seed": 0}
    columns, trained = dict(recorder.calls)["train"]
    assert columns == [f"f{j}" for j in range(FEATURES)]
    X = pd.read_parquet(lake).to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(trained, draw_sample(X, SAMPLE, 0))
    assert recorder.calls[-1] == ("shutdown", None)
    assert set(run.parts) == {"import_start", "fit", "score"}
    assert run.seconds == pytest.approx(sum(run.parts.values()))
    assert run.score_seconds == run.parts["score"] > 0
    assert run.rows_per_second == ROWS / run.seconds
    assert (run.version, run.threads) == ("3.0-stand-in", 2)


def test_a_failing_peer_is_one_line_in_the_report_and_h2o_still_stops(
    monkeypatch, tmp_path, lake
) -> None:
    recorder = _Recorder()
    _install_h2o(monkeypatch, tmp_path, _fake_h2o(recorder, fail_predict=True))
    report = run_peer("h2o", lake, SAMPLE)
    assert report == {"failed": "h2o: RuntimeError: the JVM ran out of memory on two lines"}
    assert recorder.calls[-1] == ("shutdown", None)


def test_free_port_gives_two_free_ports() -> None:
    import socket

    port = peers.free_port()
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


# --- the real peers, where the bench extra is installed --------------------------------


def test_real_isotree_on_a_small_lake(lake) -> None:
    pytest.importorskip("isotree")  # the bench extra; not in CI's dev install
    run = run_isotree(lake, SAMPLE, seed=0)
    assert run.version == "0.6.1" and run.threads == 2
    assert 0 < run.score_seconds < run.seconds < 30
    assert run.rows_per_second == ROWS / run.seconds
    assert run.peak_rss_bytes["process"] > 10_000_000
    assert run_peer("isotree", lake, SAMPLE)["version"] == "0.6.1"


@pytest.mark.slow
def test_real_h2o_on_a_small_lake(lake, capfd) -> None:
    pytest.importorskip("h2o")  # the bench extra; not in CI's dev install
    if not peers.java_available():
        pytest.skip(JAVA_HINT)
    run = run_h2o(lake, SAMPLE, seed=0)
    assert run.version == "3.46.0.12" and run.threads == 2
    assert run.seconds == pytest.approx(sum(run.parts.values()))
    assert run.peak_rss_bytes["h2o-jvm"] > 50_000_000
    assert capfd.readouterr().out == ""
