"""Search spaces become explicit candidate lists: defaults, ranges, distributions, grids."""

from __future__ import annotations

import pytest
from scipy import stats
from sklearn.model_selection import ParameterGrid

from adp.errors import ConfigError
from adp.tuning.space import DEFAULT_DETECTORS, DEFAULT_RANGES, draw_candidates


def _runnable(candidates):
    return [c for c in candidates if c.skip_reason is None]


def test_default_space_interleaves_detectors_within_their_ranges():
    candidates = draw_candidates(max_trials=21, random_state=0)
    assert [c.trial for c in candidates] == list(range(21))
    assert [c.detector for c in candidates[: len(DEFAULT_DETECTORS)]] == list(DEFAULT_DETECTORS)
    for c in candidates:
        for param, value in c.params.items():
            if param == "random_state":
                assert isinstance(value, int)
            else:
                assert value in DEFAULT_RANGES[c.detector][param], (c.detector, param)
    forests = [c for c in candidates if c.detector == "isolation_forest"]
    assert all("random_state" in c.params for c in forests)
    assert len({repr(sorted(c.params.items())) for c in forests}) == len(forests)


def test_random_draws_are_reproducible_and_follow_distributions():
    space = {
        "isolation_forest": {
            "n_estimators": [100, 200],
            "max_features": stats.uniform(0.5, 0.5),
            "max_samples": {"randint": [32, 64]},
        }
    }
    first = draw_candidates(space, "random", 12, random_state=3)
    assert first == draw_candidates(space, "random", 12, random_state=3)
    assert first != draw_candidates(space, "random", 12, random_state=4)
    assert len(first) == 12
    for c in first:
        assert c.params["n_estimators"] in (100, 200)
        assert 0.5 <= c.params["max_features"] <= 1.0
        assert isinstance(c.params["max_samples"], int) and 32 <= c.params["max_samples"] < 64
    assert len({c.params["max_features"] for c in first}) == 12


def test_grid_enumerates_every_point_and_thins_with_a_warning():
    ranges = {"n_neighbors": [5, 10, 20], "method": ["largest", "mean"]}
    grid = draw_candidates({"knn": ranges, "ecod": None}, "grid", 10)
    points = [c.params for c in grid if c.detector == "knn"]

    def key(p):
        return sorted(p.items())

    assert sorted(map(key, points)) == sorted(map(key, ParameterGrid(ranges)))
    assert [c.detector for c in grid].count("ecod") == 1

    with pytest.warns(UserWarning, match="the grid has 7 points and max_trials=4"):
        thinned = draw_candidates({"knn": ranges, "ecod": None}, "grid", 4)
    assert len(thinned) == 4
    knn = [c.params for c in thinned if c.detector == "knn"]
    assert {p["n_neighbors"] for p in knn} == {5, 20}  # the ends of the grid are kept

    with pytest.raises(ConfigError, match=r"space.knn.n_neighbors is a distribution"):
        draw_candidates({"knn": {"n_neighbors": stats.randint(2, 9)}}, "grid", 5)


def test_a_finite_space_is_sampled_without_replacement():
    candidates = draw_candidates({"knn": {"n_neighbors": [5, 10, 20]}}, "random", 50, 0)
    assert sorted(c.params["n_neighbors"] for c in candidates) == [5, 10, 20]


def test_unavailable_detectors_are_skipped_with_the_reason(missing_extra_detector):
    names = ["pca", missing_extra_detector, "no_such_detector"]
    candidates = draw_candidates(names, "random", 4, 0)
    runnable = _runnable(candidates)
    assert [c.detector for c in runnable] == ["pca"] * 4
    skipped = {c.detector: c.skip_reason for c in candidates if c.skip_reason}
    assert set(skipped) == {missing_extra_detector, "no_such_detector"}
    assert "is not available: pip install 'adp[deep]'" in skipped[missing_extra_detector]
    assert "unknown detector 'no_such_detector'" in skipped["no_such_detector"]
    assert [c.trial for c in candidates] == list(range(len(candidates)))


def test_bad_spaces_fail_with_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"unknown parameters \['n_trees'\].*n_estimators"):
        draw_candidates({"isolation_forest": {"n_trees": [10]}})
    with pytest.raises(ConfigError, match=r"space.hbos.n_bins: a mapping must be one"):
        draw_candidates({"hbos": {"n_bins": {"normal": [1, 2]}}})
    with pytest.raises(ConfigError, match=r"space.hbos.n_bins: an empty list"):
        draw_candidates({"hbos": {"n_bins": []}})
    with pytest.raises(ConfigError, match="low < high"):
        draw_candidates({"hbos": {"alpha": {"uniform": [0.5, 0.1]}}})
    with pytest.raises(ConfigError, match="twice"):
        draw_candidates(["iforest", "isolation_forest"])
    with pytest.raises(ConfigError, match="strategy"):
        draw_candidates(None, "bayes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_trials"):
        draw_candidates(None, "random", 0)
