"""What context to compute: :class:`Context`, the parameters of per-entity, time-aware
features and of categorical and text encodings, checked at construction with one-line
errors naming the field.

The nested form of a job spec (and of ``create_detector(..., context={...})``)::

    context:
      by: sensor_id            # the entity column (omit: the whole table is one series)
      time: ts                 # the time column (datetime; numeric without a season)
      window: {size: 12, stats: [mean, std, diff]}
      season: {period: 1d}     # bins: phases per period (default: period / typical step);
                               # method: profile (median/MAD per phase) | stl (statsmodels)
      normalise: robust        # robust | robust_phase | none
      raw: false               # also keep the raw columns as features
      categorical: {columns: [colour], top: 20}   # or [colour], or auto
      text: {columns: [comment], components: 8}   # or [comment], or auto

Without ``time`` (and so without ``by``, ``window`` and ``season``) a context only encodes:
the numeric columns are features as they are, beside the encodings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from adp.context.encoding_spec import (
    DEFAULT_COMPONENTS,
    DEFAULT_TOP,
    check_encodings,
    encoding_spec,
    parse_encoding,
)
from adp.errors import ConfigError, bounded

#: Window statistics a context can compute.
STATS = ("mean", "std", "min", "max", "median", "diff")
#: Normalisations of the residuals.
NORMALISE = ("robust", "robust_phase", "none")
#: The longest window (rows per entity) a context accepts.
MAX_WINDOW = 2_000
#: The most phases per period a seasonal profile accepts.
MAX_BINS = 10_000
#: How a seasonal baseline is fitted: ``profile`` (median and MAD per phase) or ``stl``.
SEASON_METHODS = ("profile", "stl")

_TOP_KEYS = ("by", "time", "window", "season", "normalise", "raw", "categorical", "text")


def _check_name(value: object, where: str, required: bool) -> str | None:
    if value is None:
        if required:
            raise ConfigError(f"{where}: name the column (for example {where.split('.')[-1]}: ts)")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a column name, got {value!r}")
    return value


def parse_period(value: object, where: str = "context.season.period") -> pd.Timedelta:
    """A positive duration (``"1d"``, ``"12h"``, ``"7d"``), or a one-line ConfigError."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}: expected a duration such as 1d, 12h or 7d, got {value!r}")
    try:
        with warnings.catch_warnings():  # pandas 3 deprecates "1d" for "1D": both are fine
            warnings.simplefilter("ignore")
            period = pd.Timedelta(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {value!r} is not a duration; give one such as 1d, 12h or 7d"
        ) from None
    if pd.isna(period) or period <= pd.Timedelta(0):
        raise ConfigError(f"{where}: the period must be positive, got {value!r}")
    return period


@dataclass(frozen=True)
class Context:
    """Per-entity, time-aware features (seasonal residuals and trailing-window statistics)
    and encodings of categorical and free-text columns.

    A plain, immutable parameter object (nothing is learned here): a detector given one
    fits a :class:`~adp.context.fitted.FittedContext` on its training data and keeps it as
    ``context_``.

    Parameters
    ----------
    time : str, optional
        The time column that orders each entity's rows (datetime; numeric is accepted
        when there is no ``season``). Needed by ``by``, ``window`` and ``season``; without
        it the context only encodes (``categorical``, ``text``) and the numeric columns
        are features as they are.
    by : str, optional
        The entity column (a sensor, a host, a series); ``None``: one series.
    window : int, optional
        Trailing window, in rows of the same entity, of the ``stats`` features.
    stats : tuple of str
        Window statistics among :data:`STATS`: ``mean``, ``std``, ``min``, ``max``,
        ``median`` over the window, and ``diff`` (change from the entity's previous row).
    season : str, optional
        The seasonal period (``"1d"``, ``"7d"``): each value is compared with its entity's
        median at the same phase of the period.
    bins : int, optional
        Phases per period; default the period divided by the most common time step.
    normalise : {"robust", "robust_phase", "none"}
        ``robust`` divides residuals by the entity's robust scale of residuals (1.4826
        times their median absolute value), so entities of different levels and spreads
        share one detector; ``robust_phase`` by the MAD of the entity's values at the
        row's phase (for noise that follows the season); ``none`` keeps the units.
    raw : bool
        Also give the detector the raw columns.
    season_method : {"profile", "stl"}
        How the seasonal baseline is fitted (``season.method`` in the nested form):
        ``profile``, the median and MAD of the values at each phase; ``stl``, a robust
        STL decomposition of each entity's series (statsmodels, ``pip install
        'adp[timeseries]'``) summarised into the same per-phase table (see
        :mod:`adp.context.stl`). Scoring is the same per-row lookup either way.
    categorical : tuple of str or "auto"
        Columns encoded as categories: ``<column>.freq`` (the category's share of the fit
        sample, 0 for one never seen) and ``<column>=<category>`` (0/1) for the ``top``
        most frequent categories. A missing value is a category of its own
        (``<column>=<missing>``). ``"auto"``: every string-like feature column (strings,
        pandas categoricals, booleans) not named in ``text``.
    text : tuple of str or "auto"
        Free-text columns: hashed words projected on a truncated SVD fitted on the sample,
        ``<column>.svd0`` ... and ``<column>.svd_residual`` (how unlike the sample's text
        the row is). Missing text is empty text. ``"auto"``: every string-like feature
        column not named in ``categorical``; when both are ``"auto"``, a column is text
        when its sample values average 3 or more words and at least a fifth are distinct.
    top : int
        One-hot categories per categorical column (0: the frequency only).
    components : int
        SVD components per text column (fewer when the sample has fewer distinct texts).

    Examples
    --------
    >>> Context(by="sensor_id", time="ts", window=12, season="1d").feature_names(["vibration"])
    ['vibration.diff_from_season', 'vibration.roll_mean_12', 'vibration.roll_std_12', \
'vibration.diff']
    """

    time: str | None = None
    by: str | None = None
    window: int | None = None
    stats: tuple[str, ...] = field(default=("mean", "std", "diff"))
    season: str | None = None
    bins: int | None = None
    normalise: str = "robust"
    raw: bool = False
    season_method: str = "profile"
    categorical: tuple[str, ...] | str = ()
    text: tuple[str, ...] | str = ()
    top: int = DEFAULT_TOP
    components: int = DEFAULT_COMPONENTS

    def __post_init__(self) -> None:
        check_encodings(self)
        temporal = self.by is not None or self.window is not None or self.season is not None
        if self.time is None and not temporal and not self.encodes:
            raise ConfigError(
                "context.time: name the time column (for example time: ts), or give "
                "columns to encode in context.categorical or context.text"
            )
        _check_name(self.time, "context.time", required=temporal)
        _check_name(self.by, "context.by", required=False)
        if self.time is None and (self.raw or self.normalise != "robust"):
            raise ConfigError(
                f"context.{'raw' if self.raw else 'normalise'} applies to the baselines of "
                "context.time: name the time column or remove it"
            )
        if self.by is not None and self.by == self.time:
            raise ConfigError(f"context.by and context.time both name {self.by!r}")
        if self.window is not None:
            if isinstance(self.window, bool) or not isinstance(self.window, int):
                raise ConfigError(
                    f"context.window.size: expected a whole number of rows, got {self.window!r}"
                )
            if not 2 <= self.window <= MAX_WINDOW:
                raise ConfigError(
                    f"context.window.size must be between 2 and {MAX_WINDOW} rows, "
                    f"got {self.window}"
                )
        stats = self.stats
        if isinstance(stats, str) or not all(isinstance(s, str) for s in stats):
            raise ConfigError(f"context.window.stats: expected a list of names, got {stats!r}")
        object.__setattr__(self, "stats", tuple(stats))
        unknown = [s for s in self.stats if s not in STATS]
        if unknown:
            raise ConfigError(
                f"context.window.stats: unknown {bounded(unknown)}; valid: {', '.join(STATS)}"
            )
        if len(set(self.stats)) != len(self.stats):
            raise ConfigError(f"context.window.stats names a statistic twice: {list(stats)}")
        if self.season is not None:
            parse_period(self.season)
        if self.bins is not None:
            if isinstance(self.bins, bool) or not isinstance(self.bins, int):
                raise ConfigError(
                    f"context.season.bins: expected a whole number, got {self.bins!r}"
                )
            if self.season is None:
                raise ConfigError("context.season.bins needs context.season.period")
            if not 1 <= self.bins <= MAX_BINS:
                raise ConfigError(
                    f"context.season.bins must be between 1 and {MAX_BINS}, got {self.bins}"
                )
        if self.normalise not in NORMALISE:
            raise ConfigError(
                f"context.normalise: {self.normalise!r} is not one of {', '.join(NORMALISE)}"
            )
        if not isinstance(self.raw, bool):
            raise ConfigError(f"context.raw: expected true or false, got {self.raw!r}")
        if self.season_method not in SEASON_METHODS:
            raise ConfigError(
                f"context.season.method: {self.season_method!r} is not one of "
                f"{', '.join(SEASON_METHODS)}"
            )
        if self.season_method != "profile" and self.season is None:
            raise ConfigError(
                f"context.season.method: {self.season_method} needs context.season.period"
            )

    # -- the nested (spec) form -----------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Context | Mapping[str, Any]) -> Context:
        """A :class:`Context` from its nested form (see the module docstring), or as given.

        Raises
        ------
        adp.errors.ConfigError
            Naming the field (``context.window.size``, ``context.season.period``, ...).
        """
        if isinstance(spec, Context):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"context: expected a mapping such as {{by: sensor_id, time: ts}}, got "
                f"{type(spec).__name__}"
            )
        unknown = sorted(set(spec) - set(_TOP_KEYS))
        if unknown:
            raise ConfigError(f"context: unknown fields {unknown}; valid: {', '.join(_TOP_KEYS)}")
        window, stats = _window(spec.get("window"))
        season, bins, method = _season(spec.get("season"))
        categorical, top = parse_encoding(spec.get("categorical"), "categorical")
        text, components = parse_encoding(spec.get("text"), "text")
        return cls(
            time=spec.get("time"),
            by=spec.get("by"),
            window=window,
            stats=stats,
            season=season,
            bins=bins,
            normalise=spec.get("normalise", "robust"),
            raw=spec.get("raw", False),
            season_method=method,
            categorical=categorical,
            text=text,
            top=top,
            components=components,
        )

    def to_spec(self) -> dict[str, Any]:
        """The nested, JSON-serialisable form that :meth:`from_spec` reads back."""
        out: dict[str, Any] = {} if self.time is None else {"time": self.time}
        if self.by is not None:
            out["by"] = self.by
        if self.window is not None:
            out["window"] = {"size": self.window, "stats": list(self.stats)}
        if self.season is not None:
            out["season"] = {"period": self.season}
            if self.bins is not None:
                out["season"]["bins"] = self.bins
            if self.season_method != "profile":
                out["season"]["method"] = self.season_method
        if self.time is not None:
            out["normalise"] = self.normalise
        if self.raw:
            out["raw"] = True
        out.update(encoding_spec(self))
        return out

    # -- what it produces -----------------------------------------------------------------

    @property
    def period(self) -> pd.Timedelta | None:
        """The seasonal period as a duration, or ``None``."""
        return None if self.season is None else parse_period(self.season)

    @property
    def residual_name(self) -> str:
        """The suffix of the residual feature: ``diff_from_season`` or ``diff_from_median``."""
        return "diff_from_season" if self.season is not None else "diff_from_median"

    def used_columns(self) -> list[str]:
        """The ``by`` and ``time`` columns (never features themselves)."""
        return [c for c in (self.by, self.time) if c is not None]

    @property
    def encodes(self) -> bool:
        """Whether the context encodes categorical or text columns."""
        return bool(self.categorical) or bool(self.text)

    def encoded_columns(self) -> list[str]:
        """The columns named in ``categorical`` and ``text`` (not those ``auto`` finds)."""
        return [c for group in (self.categorical, self.text) if group != "auto" for c in group]

    def feature_names(self, columns: list[str]) -> list[str]:
        """The feature names produced for the numeric value ``columns``, in order: per
        column, the raw value (with ``raw``), the residual, then the window statistics;
        without ``time``, the columns themselves. (The encodings' names depend on the
        fitted sample: :attr:`adp.context.fitted.FittedContext.feature_names`.)"""
        if self.time is None:
            return list(columns)
        names: list[str] = []
        for c in columns:
            if self.raw:
                names.append(c)
            names.append(f"{c}.{self.residual_name}")
            if self.window is not None:
                for stat in self.stats:
                    names.append(
                        f"{c}.diff" if stat == "diff" else f"{c}.roll_{stat}_{self.window}"
                    )
        return names


def _window(value: object) -> tuple[int | None, tuple[str, ...]]:
    default = ("mean", "std", "diff")
    if value is None:
        return None, default
    if isinstance(value, int) and not isinstance(value, bool):
        return value, default
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"context.window: expected {{size: 12, stats: [mean, std, diff]}} or a size, "
            f"got {value!r}"
        )
    unknown = sorted(set(value) - {"size", "stats"})
    if unknown:
        raise ConfigError(f"context.window: unknown fields {unknown}; valid: size, stats")
    if "size" not in value:
        raise ConfigError("context.window.size: give the window length in rows (e.g. 12)")
    stats = value.get("stats", default)
    if isinstance(stats, str) or not isinstance(stats, list | tuple):
        raise ConfigError(f"context.window.stats: expected a list of names, got {stats!r}")
    return value["size"], tuple(stats)


def _season(value: object) -> tuple[str | None, int | None, Any]:
    if value is None:
        return None, None, "profile"
    if isinstance(value, str):
        return value, None, "profile"
    if not isinstance(value, Mapping):
        raise ConfigError(f"context.season: expected {{period: 1d}} or a period, got {value!r}")
    unknown = sorted(set(value) - {"period", "bins", "method"})
    if unknown:
        raise ConfigError(f"context.season: unknown fields {unknown}; valid: period, bins, method")
    if "period" not in value:
        raise ConfigError("context.season.period: give the period (e.g. 1d or 7d)")
    period = value["period"]
    if not isinstance(period, str):
        raise ConfigError(
            f"context.season.period: expected a duration such as 1d, 12h or 7d, got {period!r}"
        )
    return period, value.get("bins"), value.get("method", "profile")
