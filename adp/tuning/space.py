"""Search spaces: which detectors, which hyperparameters, and how candidates are drawn.

A space names detectors and, for each, the values its parameters may take::

    ["isolation_forest", "hbos"]                      # default ranges for each
    {"isolation_forest": {"n_estimators": [100, 200],  # a list: choose among these
                          "max_features": scipy.stats.uniform(0.5, 0.5)},  # a distribution
     "hbos": None}                                     # None: the default ranges

In YAML, where scipy objects cannot be written, a distribution is a one-key mapping:
``{uniform: [low, high]}``, ``{loguniform: [low, high]}`` or ``{randint: [low, high]}``
(``high`` exclusive for ``randint``). A scalar fixes the parameter; a parameter whose value
is itself a list is written as a list of lists (``hidden_neuron_list: [[64, 32]]``).

:func:`draw_candidates` turns a space into the explicit list of candidates a search
evaluates, the same list whichever engine runs them: ``strategy="grid"`` enumerates every
combination of listed values, ``strategy="random"`` samples (without replacement where the
space is finite). Trials are shared evenly among the detectors. A detector that is not
available in this installation (an unknown name, or an optional dependency missing) becomes
a *skipped* candidate carrying the reason, never an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats
from sklearn.model_selection import ParameterGrid, ParameterSampler

from adp.errors import ConfigError, DetectorError

Strategy = Literal["random", "grid"]

DEFAULT_DETECTORS: tuple[str, ...] = (
    "isolation_forest",
    "hbos",
    "ecod",
    "copod",
    "pca",
    "knn",
    "lof",
)
"""The detectors searched when ``space`` is None. ``one_class_svm`` is left out on purpose:
its fit costs O(n^2) to O(n^3) in the sample size (name it explicitly, with a smaller
``sample_rows`` or a ``time_budget``)."""

DEFAULT_RANGES: dict[str, dict[str, Any]] = {
    "isolation_forest": {
        "n_estimators": [50, 100, 200, 300],
        "max_samples": [64, 128, 256, 512],
        "max_features": [0.5, 0.75, 1.0],
    },
    "hbos": {"n_bins": [5, 10, 20, 50], "alpha": [0.05, 0.1, 0.2], "tol": [0.1, 0.5, 0.9]},
    "ecod": {},
    "copod": {},
    "pca": {"n_components": [None, 0.5, 0.8, 0.95], "whiten": [False, True]},
    "knn": {"n_neighbors": [5, 10, 20, 50], "method": ["largest", "mean", "median"]},
    "lof": {"n_neighbors": [10, 20, 35, 50]},
    "one_class_svm": {"nu": [0.1, 0.3, 0.5], "gamma": ["scale", "auto"]},
    "autoencoder": {
        "hidden_neuron_list": [[64, 32], [32, 16]],
        "epoch_num": [10, 30],
        "dropout_rate": [0.1, 0.2],
    },
}
"""Sensible ranges per detector, used when a space names a detector without ranges.
A detector missing here is searched at its defaults (one candidate)."""

_YAML_DISTRIBUTIONS = {
    "uniform": lambda low, high: stats.uniform(low, high - low),
    "loguniform": lambda low, high: stats.loguniform(low, high),
    "randint": lambda low, high: stats.randint(low, high),
}


@dataclass(frozen=True)
class Candidate:
    """One point of a search: a detector and its parameters, or a skipped detector.

    Attributes
    ----------
    trial : int
        Position in the search, from 0.
    detector : str
        The canonical detector name (or the name as given, when it is unknown).
    params : dict
        Parameters for :func:`adp.create_detector` (``random_state`` included when the
        detector takes one, so the winner can be refitted exactly).
    skip_reason : str or None
        Why the candidate cannot run in this installation; ``None`` when it can.
    """

    trial: int
    detector: str
    params: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None


@dataclass(frozen=True)
class _DetectorSpace:
    name: str
    ranges: dict[str, Any]  # parameter -> list of values or a distribution (has .rvs)
    takes_random_state: bool

    def grid_size(self) -> float:
        size = 1.0
        for values in self.ranges.values():
            if _is_distribution(values):
                return math.inf
            size *= len(values)
        return size


def _is_distribution(value: Any) -> bool:
    return hasattr(value, "rvs")


def _parse_values(detector: str, param: str, value: Any) -> Any:
    where = f"space.{detector}.{param}"
    if _is_distribution(value):
        return value
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in _YAML_DISTRIBUTIONS:
            raise ConfigError(
                f"{where}: a mapping must be one distribution, one of "
                f"{sorted(_YAML_DISTRIBUTIONS)} with [low, high], got {dict(value)!r}"
            )
        kind, bounds = next(iter(value.items()))
        if not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise ConfigError(f"{where}: {kind} needs [low, high], got {bounds!r}")
        low, high = bounds
        if not low < high:
            raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
        return _YAML_DISTRIBUTIONS[kind](low, high)
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{where}: an empty list leaves nothing to search")
        return list(value)
    return [value]


def _normalize(space: Any) -> list[tuple[str, Mapping[str, Any] | None]]:
    if space is None:
        return [(name, None) for name in DEFAULT_DETECTORS]
    if isinstance(space, str):
        return [(space, None)]
    if isinstance(space, Mapping):
        out = []
        for name, ranges in space.items():
            if ranges is not None and not isinstance(ranges, Mapping):
                raise ConfigError(
                    f"space.{name}: expected a mapping of parameter ranges or null, "
                    f"got {type(ranges).__name__}"
                )
            out.append((str(name), ranges))
        return out
    if isinstance(space, Sequence):
        out = []
        for item in space:
            if isinstance(item, str):
                out.append((item, None))
            elif isinstance(item, Mapping):
                out.extend(_normalize(item))
            else:
                raise ConfigError(
                    f"space: entries must be detector names or mappings, got {item!r}"
                )
        return out
    raise ConfigError(
        f"space must be a detector name, a list of names or a mapping name -> ranges, "
        f"got {type(space).__name__}"
    )


def _detector_space(
    name: str, ranges: Mapping[str, Any] | None
) -> tuple[_DetectorSpace | None, str, str | None]:
    """Resolve one entry: (space or None, canonical name, reason it is skipped)."""
    from adp.detect.registry import detector_info

    try:
        info = detector_info(name)
        valid = info.valid_params()  # imports the estimator: fails when it is unavailable
    except DetectorError as exc:
        return None, name.lower(), str(exc)
    explicit = ranges is not None
    raw = dict(ranges) if ranges is not None else dict(DEFAULT_RANGES.get(info.name, {}))
    unknown = sorted(set(raw) - set(valid))
    if unknown and explicit:
        raise ConfigError(
            f"space.{name}: unknown parameters {unknown} for detector {info.name!r}; "
            f"valid parameters: {', '.join(valid)}"
        )
    parsed = {p: _parse_values(info.name, p, v) for p, v in raw.items() if p in valid}
    return _DetectorSpace(info.name, parsed, "random_state" in valid), info.name, None


def _share(total: int, capacities: list[float]) -> list[int]:
    """Deal ``total`` trials round-robin, none beyond a detector's capacity."""
    counts = [0] * len(capacities)
    remaining = total
    while remaining > 0:
        progressed = False
        for i, capacity in enumerate(capacities):
            if remaining and counts[i] < capacity:
                counts[i] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    return counts


def _grid_points(space: _DetectorSpace, count: int) -> list[dict[str, Any]]:
    for param, values in space.ranges.items():
        if _is_distribution(values):
            raise ConfigError(
                f"space.{space.name}.{param} is a distribution, and a grid search needs "
                "lists of values: give a list, or use strategy='random'"
            )
    grid = ParameterGrid(space.ranges) if space.ranges else ParameterGrid([{}])
    # Evenly spaced when the grid is cut short, so every range is still visited.
    positions = np.unique(np.linspace(0, len(grid) - 1, num=count).round().astype(int))
    return [dict(grid[int(i)]) for i in positions]


def _random_points(space: _DetectorSpace, count: int, seed: int) -> list[dict[str, Any]]:
    if not space.ranges:
        return [{}]
    size = space.grid_size()
    if math.isfinite(size):  # sample the finite grid without replacement
        grid = ParameterGrid(space.ranges)
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(grid), size=count, replace=False)
        return [dict(grid[int(i)]) for i in picks]
    points = list(ParameterSampler(space.ranges, n_iter=count, random_state=seed))
    return [{k: _plain(v) for k, v in p.items()} for p in points]


def _plain(value: Any) -> Any:
    """numpy scalars from distributions as Python numbers (they go into YAML and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def draw_candidates(
    space: Any = None,
    strategy: Strategy = "random",
    max_trials: int = 50,
    random_state: int | None = None,
) -> list[Candidate]:
    """The explicit list of candidates a search evaluates.

    Parameters
    ----------
    space : str, list or mapping, optional
        Detectors and their parameter ranges (see the module docstring); default
        :data:`DEFAULT_DETECTORS` with :data:`DEFAULT_RANGES`.
    strategy : {"random", "grid"}
        ``"grid"`` takes every combination (evenly thinned, with a warning, beyond
        ``max_trials``); ``"random"`` samples ``max_trials`` points.
    max_trials : int
        Upper bound on runnable candidates, shared evenly among available detectors.
    random_state : int, optional
        Seed for the draw and for each candidate's own ``random_state``.

    Returns
    -------
    list of Candidate
        Runnable candidates first (``trial`` numbers in order), then one skipped candidate
        per unavailable detector.

    Raises
    ------
    adp.errors.ConfigError
        For a malformed space, an unknown parameter in explicit ranges, a distribution in
        a grid search, or a bad strategy or ``max_trials``.
    """
    if strategy not in ("random", "grid"):
        raise ConfigError(f"strategy must be 'random' or 'grid', got {strategy!r}")
    if int(max_trials) < 1:
        raise ConfigError(f"max_trials must be at least 1, got {max_trials!r}")
    spaces: list[_DetectorSpace] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, ranges in _normalize(space):
        resolved, canonical, reason = _detector_space(name, ranges)
        if canonical in seen:
            raise ConfigError(f"space names detector {canonical!r} twice")
        seen.add(canonical)
        if resolved is None:
            skipped.append((canonical, reason or "unavailable"))
        else:
            spaces.append(resolved)

    seeds = np.random.SeedSequence(random_state)
    draw_seed, param_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(2))
    if strategy == "grid":
        sizes = [s.grid_size() for s in spaces]
        if any(math.isinf(n) for n in sizes):
            bad = next(s for s in spaces if math.isinf(s.grid_size()))
            _grid_points(bad, 1)  # raises, naming the parameter
        counts = _share(int(max_trials), sizes)
        if sum(counts) < sum(sizes):
            warnings.warn(
                f"the grid has {int(sum(sizes))} points and max_trials={max_trials}: "
                f"{int(sum(sizes)) - sum(counts)} points are left out (evenly thinned); "
                "raise max_trials to run them all",
                UserWarning,
                stacklevel=2,
            )
        per_detector = [_grid_points(s, n) for s, n in zip(spaces, counts, strict=True) if n]
    else:
        counts = _share(int(max_trials), [s.grid_size() for s in spaces])
        children = np.random.SeedSequence(draw_seed).spawn(max(len(spaces), 1))
        per_detector = [
            _random_points(s, n, int(c.generate_state(1)[0]))
            for s, n, c in zip(spaces, counts, children, strict=False)
            if n
        ]
    used = [s for s, n in zip(spaces, counts, strict=True) if n]

    # Interleave detectors so a time budget cut leaves a mix of them, not one family.
    order: list[tuple[_DetectorSpace, dict[str, Any]]] = []
    for depth in range(max((len(p) for p in per_detector), default=0)):
        for s, points in zip(used, per_detector, strict=True):
            if depth < len(points):
                order.append((s, points[depth]))

    rng = np.random.default_rng(param_seed)
    candidates = []
    for i, (s, params) in enumerate(order):
        params = dict(params)
        if s.takes_random_state and "random_state" not in params:
            params["random_state"] = int(rng.integers(0, 2**31 - 1))
        candidates.append(Candidate(i, s.name, params))
    for j, (name, reason) in enumerate(skipped, start=len(candidates)):
        candidates.append(Candidate(j, name, {}, skip_reason=reason))
    return candidates


__all__ = ["DEFAULT_DETECTORS", "DEFAULT_RANGES", "Candidate", "Strategy", "draw_candidates"]
