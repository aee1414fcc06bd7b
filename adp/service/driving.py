"""The job driver's own process: ``python -m adp.service.driving``, started by
:class:`adp.service.driver_process.DriverProcess`.

Jobs are driven here, not in the process that answers HTTP: a job's client, its progress
callbacks and (when the service starts its own cluster) the scheduler all take the GIL,
and in the API's process they made a submission wait behind them. This process talks to
its parent through its standard streams only:

- **stdin**: the first line is the setup, a JSON object ``{"config": ..., "service": ...,
  "scheduler": ...}`` (the parent's ``dask.config``, the service's settings as the parent
  resolved them, e.g. with ``adp serve``'s options, and the scheduler to drive jobs on, or
  null for a LocalCluster of this process's own). Every later byte means "look at the queue now".
  End of file means the parent is gone or asks this process to stop: running jobs end
  ``interrupted`` and the process exits 0. SIGTERM does the same; SIGINT is left to the
  parent (a Ctrl-C in the terminal reaches the whole process group).
- **stdout**: one JSON line, ``{"address": ...}`` once jobs can run, or ``{"error": ...}``
  when they cannot (then the exit status is 1). After it, stdout goes to stderr.

Everything else (jobs, their state, cancel requests) goes through the job database.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("adp.service.driving")


def _announce(message: dict[str, Any]) -> None:
    """Write the one line the parent waits for, then send stdout to stderr."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()
    os.dup2(2, 1)


def _listen(on_byte: Any, on_end: Any) -> None:
    """Call ``on_byte`` for every read from stdin and ``on_end`` at its end."""
    try:
        while os.read(0, 64):
            on_byte()
    except (OSError, ValueError):
        pass
    on_end()


def main() -> int:
    """Drive the service's jobs until stdin closes or SIGTERM arrives.

    Returns
    -------
    int
        0 after a clean stop, 1 when the driver could not start (said on stdout).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    line = sys.stdin.readline()
    if not line:
        return 1
    setup = json.loads(line)

    import dask.config

    dask.config.update(dask.config.config, setup["config"], priority="new")
    logging.basicConfig(
        level=logging.WARNING, format="adp job driver %(levelname)s %(name)s: %(message)s"
    )
    from adp.config import ServiceSettings
    from adp.errors import AdpError

    try:
        options = ServiceSettings.model_validate(setup["service"])
        parts = _open(options, setup.get("scheduler"))
    except AdpError as exc:
        _announce({"error": str(exc)})
        return 1
    except Exception as exc:  # the parent reports it; the traceback goes to the log
        logger.exception("the job driver could not start")
        _announce({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    driver, client, closers = parts
    _announce({"address": client.scheduler_info()["address"]})
    listener = threading.Thread(
        target=_listen, args=(driver.wake, stop.set), name="adp-driver-stdin", daemon=True
    )
    listener.start()
    driver.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        driver.stop(60.0)
        for close in closers:
            try:
                close()
            except Exception:  # closing is best effort: the process ends anyway
                logger.debug("closing failed", exc_info=True)
    return 0


def _open(options: Any, scheduler: str | None) -> tuple[Any, Any, list[Any]]:
    """The job driver (with the service's ``options``), its cluster's client, and what
    closes them, in order."""
    from adp.cluster import connect
    from adp.cluster.lost import close_client
    from adp.config import settings
    from adp.observe.audit import AuditLog
    from adp.service.control import JobControl
    from adp.service.driver import JobDriver
    from adp.service.policy import Policy
    from adp.service.store import JobStore, job_store_url

    cfg = settings()
    store = JobStore(job_store_url(options, cfg.state_dir), state_dir=cfg.state_dir)
    audit_log = AuditLog()
    closers: list[Any] = [store.close, audit_log.close]
    try:
        policy = Policy.from_yaml(options.policy) if options.policy else Policy.default()
        client = connect(scheduler) if scheduler else connect()
    except BaseException:
        for close in closers:
            close()
        raise
    closers.insert(0, lambda: close_client(client))
    control = JobControl(store, policy, audit_log)
    driver = JobDriver(
        store,
        str(client.scheduler_info()["address"]),
        audit_log,
        max_running=options.max_running,
        reports_dir=cfg.state_dir / "service" / "reports",
        authorize=control.start_denial,
        quality=control.quality_gate,
    )
    return driver, client, closers


if __name__ == "__main__":  # pragma: no cover - the parent starts it
    sys.exit(main())
