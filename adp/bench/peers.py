"""The peers of ``adp bench scoring --against isotree,h2o``: other isolation forests, run in
this process on the bench's lake, timed as single-process PyOD is.

Each peer reads the lake with pandas, fits an isolation forest of 100 trees on 256-row
subsamples to the very sample PyOD fits (:func:`draw_sample`, the same rows for the same
seed), scores every row on 2 threads and counts the rows over the 90% quantile. A peer whose
package (the ``bench`` extra: ``pip install 'adp[bench]'``) or, for H2O, Java is missing
raises :class:`PeerSkipped` with a one-line reason before anything is timed.

* isotree: warmed up on 1,000 rows first, untimed, as PyOD is.
* H2O: its import and the start of its JVM (``h2o.init(nthreads=2)`` on a free local port)
  are timed too, as ``import_start``; the JVM is shut down afterwards, also on failure, and
  what h2o prints is dropped.

This module imports nothing of ``adp.bench.scoring``: that module imports it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import os
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from adp.bench.measure import RssSampler, timed

#: The peers ``--against`` knows, in the order they run.
PEERS = ("isotree", "h2o")
#: The only detector with peers.
PEER_DETECTOR = "isolation_forest"
TREES = 100
SUBSAMPLE = 256
THREADS = 2
INSTALL_HINT = "pip install 'adp[bench]'"
JAVA_HINT = (
    "H2O needs Java: no `java` on PATH and no JAVA_HOME "
    "(on Debian: apt-get install openjdk-17-jre-headless)"
)


class PeerSkipped(Exception):
    """A peer cannot run on this machine; the message is the one-line reason."""


@dataclass
class PeerRun:
    """One peer's measured run (the fields of ``adp.bench.scoring.Run``, and more).

    ``seconds`` is the whole job, ``score_seconds`` the scoring of every row once the model
    is fitted, ``peak_rss_bytes`` the largest resident memory sampled during the run
    (``process``: this process; ``h2o-jvm``: H2O's JVM). ``parts`` splits ``seconds``
    where a peer has more than one phase worth telling (H2O: ``import_start``, ``fit``,
    ``score``).
    """

    seconds: float
    rows_per_second: float
    score_seconds: float
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    version: str = ""
    threads: int = THREADS
    parts: dict[str, float] = field(default_factory=dict)


def draw_sample(X: np.ndarray, sample_rows: int, seed: int = 0) -> np.ndarray:
    """The rows every system of ``adp bench scoring`` fits on: ``min(sample_rows, len(X))``
    rows drawn without replacement by ``numpy.random.default_rng(seed)``, in lake order.

    Parameters
    ----------
    X : numpy.ndarray
        Every row of the lake.
    sample_rows : int
        Rows wanted.
    seed : int, default 0
        Seed of the generator.

    Returns
    -------
    numpy.ndarray
        The sampled rows.
    """
    rng = np.random.default_rng(seed)
    return X[np.sort(rng.choice(len(X), size=min(sample_rows, len(X)), replace=False))]


def parse_peers(text: str | None) -> tuple[str, ...]:
    """``"isotree,h2o"`` as ``("isotree", "h2o")``, without repeats; empty for none.

    Parameters
    ----------
    text : str or None
        Comma-separated peer names.

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        A name is not one of :data:`PEERS` (the message lists them).
    """
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in PEERS:
            raise ValueError(f"unknown peer {raw.strip()!r}: known peers are {', '.join(PEERS)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def _import(package: str) -> ModuleType:
    """Import ``package`` or raise :class:`PeerSkipped` saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise PeerSkipped(f"{package} is not installed: {INSTALL_HINT}") from exc


def _version(package: str, module: ModuleType) -> str:
    """The imported module's ``__version__``, else its installed distribution's."""
    if getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def java_available() -> bool:
    """Whether H2O can find Java: ``$JAVA_HOME/bin/java`` or ``java`` on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


def check_peer(name: str) -> None:
    """Raise :class:`PeerSkipped` if peer ``name`` cannot run here (nothing is imported).

    Parameters
    ----------
    name : str
        One of :data:`PEERS`.

    Raises
    ------
    PeerSkipped
        Its package is missing, or, for H2O, Java is.
    """
    if name == "h2o" and not java_available():
        raise PeerSkipped(JAVA_HINT)
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module without a spec (set up by hand) is present
        found = name in sys.modules
    if not found:
        raise PeerSkipped(f"{name} is not installed: {INSTALL_HINT}")


def _flag(scores: np.ndarray) -> int:
    """Rows at or over the 90% quantile, as PyOD's run counts them."""
    return int(np.sum(scores >= np.quantile(scores, 0.9)))


def run_isotree(lake: Path, sample_rows: int, seed: int = 0) -> PeerRun:
    """isotree's ``IsolationForest`` (100 trees, 256-row subsamples, 2 threads).

    Parameters
    ----------
    lake : pathlib.Path
        A bench lake (a folder of Parquet files).
    sample_rows : int
        Rows of the fitting sample (:func:`draw_sample`).
    seed : int, default 0
        Seed of the sample and of the forest.

    Returns
    -------
    PeerRun
    """
    check_peer("isotree")
    isotree = _import("isotree")

    def build() -> Any:
        return isotree.IsolationForest(
            ntrees=TREES, sample_size=SUBSAMPLE, nthreads=THREADS, random_seed=seed
        )

    warm = pd.read_parquet(sorted(lake.glob("*.parquet"))[0]).to_numpy(dtype=np.float64)[:1000]
    build().fit(warm).predict(warm)
    with RssSampler() as rss, timed() as whole:
        X = pd.read_parquet(lake).to_numpy(dtype=np.float64)
        model = build().fit(draw_sample(X, sample_rows, seed))
        with timed() as scoring:
            scores = np.asarray(model.predict(X))
        _flag(scores)
    return PeerRun(
        whole.seconds,
        len(X) / whole.seconds,
        scoring.seconds,
        {"process": rss.max_bytes},
        _version("isotree", isotree),
    )


def free_port() -> int:
    """A local port ``p`` with ``p + 1`` free too (H2O listens on both)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise OSError("no free pair of local ports for H2O")


def _jvm_peak_rss() -> int:
    """Peak resident memory (VmHWM) of the Java processes this process started, 0 if none."""
    import psutil

    peak = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if "java" not in child.name():
                continue
            with open(f"/proc/{child.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, psutil.Error):
            continue
    return peak


def run_h2o(lake: Path, sample_rows: int, seed: int = 0) -> PeerRun:
    """H2O's ``H2OIsolationForestEstimator`` (100 trees, 256-row subsamples) on a local
    JVM started with 2 threads, quiet, on a free port, and shut down afterwards.

    The parts: ``import_start`` (``import h2o`` and ``h2o.init``), ``fit`` (read the lake
    with pandas, upload the sample, train) and ``score`` (upload every row, predict, bring
    the scores back, threshold); ``seconds`` is their sum.

    Parameters
    ----------
    lake : pathlib.Path
        A bench lake (a folder of Parquet files).
    sample_rows : int
        Rows of the fitting sample (:func:`draw_sample`).
    seed : int, default 0
        Seed of the sample and of the forest.

    Returns
    -------
    PeerRun
    """
    check_peer("h2o")
    # h2o prints (the cluster's age, "session closed"): not into the bench's report
    with RssSampler() as rss, contextlib.redirect_stdout(io.StringIO()):
        with timed() as start:
            h2o = _import("h2o")
            h2o.init(
                ip="127.0.0.1",
                port=free_port(),
                nthreads=THREADS,
                name=f"adp-bench-{os.getpid()}",
                verbose=False,
            )
        try:
            h2o.no_progress()
            from h2o.estimators import H2OIsolationForestEstimator

            with timed() as fitting:
                frame = pd.read_parquet(lake)
                X = frame.to_numpy(dtype=np.float64)
                sample = pd.DataFrame(draw_sample(X, sample_rows, seed), columns=frame.columns)
                model = H2OIsolationForestEstimator(ntrees=TREES, sample_size=SUBSAMPLE, seed=seed)
                model.train(x=list(frame.columns), training_frame=h2o.H2OFrame(sample))
            with timed() as scoring:
                predicted = model.predict(h2o.H2OFrame(frame))
                with warnings.catch_warnings():  # "install polars for a multi-thread download"
                    warnings.filterwarnings("ignore", "Converting H2O frame to pandas")
                    scores = predicted["predict"].as_data_frame()["predict"].to_numpy(np.float64)
                if len(scores) != len(X):
                    raise RuntimeError(f"H2O scored {len(scores)} of {len(X)} rows")
                _flag(scores)
            jvm = _jvm_peak_rss()
        finally:
            h2o.cluster().shutdown()
    seconds = start.seconds + fitting.seconds + scoring.seconds
    peaks = {"process": rss.max_bytes}
    if jvm:
        peaks["h2o-jvm"] = jvm
    return PeerRun(
        seconds,
        len(X) / seconds,
        scoring.seconds,
        peaks,
        _version("h2o", h2o),
        parts={"import_start": start.seconds, "fit": fitting.seconds, "score": scoring.seconds},
    )


RUNNERS = {"isotree": run_isotree, "h2o": run_h2o}


def run_peer(name: str, lake: Path, sample_rows: int, seed: int = 0) -> dict[str, Any]:
    """Run peer ``name`` and return its figures, or ``{"skipped": reason}``.

    Parameters
    ----------
    name : str
        One of :data:`PEERS`.
    lake : pathlib.Path
        A bench lake (a folder of Parquet files).
    sample_rows : int
        Rows of the fitting sample.
    seed : int, default 0
        Seed of the sample and of the forest.

    Returns
    -------
    dict
        The fields of :class:`PeerRun`, or ``{"skipped": reason}`` when the peer cannot run
        here, or ``{"failed": reason}`` when it raised: one line either way.
    """
    from dataclasses import asdict

    from adp.errors import one_line

    try:
        return asdict(RUNNERS[name](lake, sample_rows, seed))
    except PeerSkipped as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # a peer's failure is reported in the run, not raised
        return {"failed": one_line(f"{name}: {type(exc).__name__}: {exc}")}
