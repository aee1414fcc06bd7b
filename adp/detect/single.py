"""The single-model detector: one registered estimator, fitted on a sample, scored in parallel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from dask.delayed import Delayed

from adp.context.spec import Context
from adp.detect import fitting
from adp.detect.base import BaseDetector
from adp.detect.registry import DetectorInfo, detector_info
from adp.detect.threshold import check_contamination
from adp.errors import DetectorError


class Detector(BaseDetector):
    """An anomaly detector that fits on a sample and scores a dask DataFrame in parallel.

    Create one with :func:`adp.create_detector` (which also checks the name and parameters
    at once). ``__init__`` only stores its arguments; :meth:`fit` looks the name up and
    checks the parameters. Fitted attributes end with an underscore, as in scikit-learn
    (see :class:`~adp.detect.base.BaseDetector`).

    Parameters
    ----------
    name : str
        A registered detector name or alias (see ``adp detectors``).
    contamination : float or "auto"
        Share of rows to flag, over the whole scored dataset (default 0.1, as in PyOD), or
        ``"auto"`` to flag by a robust rule on the scores
        (:class:`~adp.detect.threshold.AutoThreshold`).
    context : Context or mapping, optional
        Per-entity, time-aware features (:class:`adp.context.Context`, or its nested
        form ``{"by": ..., "time": ..., "window": ..., "season": ...}``): the detector
        then scores the context features of its value columns (seasonal residuals,
        window statistics) instead of the raw values, and carries the fitted baselines
        as ``context_``.
    **params
        The estimator's own parameters.

    Examples
    --------
    >>> det = Detector("iforest", contamination=0.05, n_estimators=200)
    >>> det.get_params()["n_estimators"]
    200
    """

    def __init__(
        self,
        name: str,
        contamination: float | str = 0.1,
        context: Context | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        self.name = name
        self.contamination = contamination
        self.context = context
        self.params = params

    # -- parameters -----------------------------------------------------------------------

    @property
    def info(self) -> DetectorInfo:
        """The registry entry of :attr:`name` (raises for an unknown name)."""
        return detector_info(self.name)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """``name``, ``contamination``, ``context`` (when given) and the estimator's
        parameters, as given."""
        given = {"context": self.context} if self.context is not None else {}
        return {"name": self.name, "contamination": self.contamination, **given, **self.params}

    def _param_names(self) -> list[str]:
        valid = [p for p in self.info.valid_params() if p != "contamination"]
        return ["name", "contamination", "context", *valid]

    def set_params(self, **params: Any) -> Self:
        """Set parameters (``name``, ``contamination`` or any of the estimator's).

        A new ``name`` is applied first, so the other parameters are checked against the
        new detector's.

        Returns
        -------
        Detector
            ``self``.

        Raises
        ------
        adp.errors.DetectorError
            For an unknown name or parameter, listing the valid ones.
        """
        if "name" in params:
            detector_info(params["name"])  # an unknown name fails before anything changes
        previous = self.name
        self.name = params.get("name", self.name)
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            self.name = previous
            raise DetectorError(
                f"unknown parameters {unknown} for detector {params.get('name', previous)!r}; "
                f"valid parameters: {', '.join(valid)}"
            )
        for key, value in params.items():
            if key == "contamination":
                self.contamination = value
            elif key == "context":
                self.context = value
            elif key != "name":
                self.params[key] = value
        return self

    def _validate(self) -> None:
        info = self.info
        valid = info.valid_params()
        unknown = sorted(set(self.params) - set(valid))
        if unknown:
            raise DetectorError(
                f"unknown parameters {unknown} for detector {info.name!r}; "
                f"valid parameters: {', '.join(valid)}"
            )
        check_contamination(self.contamination)
        if self.context is not None:
            Context.from_spec(self.context)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        if self.context is not None:
            args = f"context={self.context!r}" + (", " + args if args else "")
        sep = ", " if args else ""
        return f"Detector({self.name!r}, contamination={self.contamination!r}{sep}{args})"

    # -- fitting --------------------------------------------------------------------------

    def _strategies(self) -> tuple[str, ...]:
        return self.info.strategies

    def _max_fit_rows(self) -> int | None:
        return self.info.max_fit_rows

    def _default_seed(self) -> int | None:
        seed: int | None = self.params.get("random_state")
        return seed

    def _plan_fit(
        self,
        parts: list[Delayed],
        counts: list[int],
        features: list[str],
        strategy: str,
        n_models: int,
        random_state: int | None,
    ) -> Delayed:
        args = (self.info, self.params, self.fit_contamination)
        if strategy == "distributed":
            return fitting.plan_distributed(*args, parts, counts, features, n_models, random_state)
        if strategy == "bagging":
            return fitting.plan_bagging(*args, parts, counts, features, n_models, random_state)
        return fitting.plan_single_fit(*args, parts, features, seed=random_state)
