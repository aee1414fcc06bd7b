"""The running service: its job store, audit trail, policy, token verifier and job
driver, put together from ``adp.service.*`` configuration.

Jobs are driven by a process of their own (``adp.service.driver: process``, the default):
the process that answers HTTP then only checks, records and queues, so a submission does
not wait behind the jobs' clients or the scheduler. ``driver: thread`` drives them inside
this process instead (one process to embed, e.g. in a notebook or a test).

A restarted service first marks every job its predecessor left ``running`` as
``interrupted`` (audited): nothing it did not see finish is ever shown as running. The
same happens when the driver process dies under a running service.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adp.config import ServiceSettings, settings
from adp.observe.audit import AuditLog
from adp.service.control import JobControl, warm_up
from adp.service.driver import JobDriver
from adp.service.driver_process import DriverProcess
from adp.service.identity import TokenVerifier
from adp.service.policy import Policy
from adp.service.store import JobRecord, JobStore, job_store_url

logger = logging.getLogger(__name__)

#: The reason given to jobs found ``running`` when the service starts.
RESTART_REASON = "the service stopped while the job ran (restarted); resume it to finish"
#: The reason given to running jobs when the driver process dies under the service.
DRIVER_EXIT_REASON = "the job driver process died while the job ran; resume it to finish"


def interrupt_running(store: JobStore, audit_log: AuditLog, reason: str) -> list[JobRecord]:
    """Mark every ``running`` job ``interrupted`` with ``reason``, logged and audited.

    Returns
    -------
    list of JobRecord
        The jobs marked.
    """
    interrupted = store.interrupt_running(reason)
    for record in interrupted:
        store.log(record.id, f"interrupted: {reason}")
        audit_log.append(
            "service.restart",
            action="run",
            resource=f"job:{record.id}",
            outcome="interrupted",
            reason=reason,
            job_id=record.id,
            identity=record.owner,
            source="service",
        )
    return interrupted


@dataclass
class Service:
    """Everything ``adp serve`` runs; build it with :meth:`start`, end it with :meth:`close`.

    Attributes
    ----------
    control : JobControl
        What callers may do (the API and the pages go through it).
    verifier : TokenVerifier
        Checks bearer tokens.
    driver : DriverProcess or JobDriver
        What runs the queued jobs (a process of its own, or threads of this one).
    scheduler_address : str
        The scheduler the jobs run on.
    client : distributed.Client or None
        This process's client, with ``driver: thread`` only.
    """

    store: JobStore
    audit_log: AuditLog
    policy: Policy
    verifier: TokenVerifier
    driver: DriverProcess | JobDriver
    control: JobControl
    scheduler_address: str
    state_dir: Path
    options: ServiceSettings
    client: Any = None
    interrupted: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        options: ServiceSettings | None = None,
        *,
        client: Any = None,
        run_jobs: bool = True,
    ) -> Service:
        """Open the state, start the job driver and connect it to the cluster.

        Parameters
        ----------
        options : ServiceSettings, optional
            Default: ``settings().service``.
        client : distributed.Client, optional
            Run jobs on this client's cluster instead of ``options.scheduler`` (or a new
            LocalCluster).
        run_jobs : bool, default True
            Start driving jobs (False: the API only, jobs stay queued).

        Raises
        ------
        adp.errors.ServiceStartError
            When the driver process cannot reach its cluster.
        """
        cfg = settings()
        options = options or cfg.service
        state_dir = cfg.state_dir
        store = JobStore(job_store_url(options, state_dir), state_dir=state_dir)
        audit_log = AuditLog()
        policy = Policy.from_yaml(options.policy) if options.policy else Policy.default()
        verifier = TokenVerifier.from_settings()
        verifier.check()  # a bad secret, PEM or JWKS stops the service now, not every request
        interrupted = interrupt_running(store, audit_log, RESTART_REASON)
        reports = state_dir / "service" / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        control = JobControl(store, policy, audit_log)
        scheduler = str(client.scheduler.address) if client is not None else options.scheduler
        own_client = False
        driver: DriverProcess | JobDriver
        # the first submission checks its detector: import the detectors meanwhile
        warming = threading.Thread(target=warm_up, name="adp-warm-up", daemon=True)
        warming.start()
        if options.driver == "process":
            process = DriverProcess(
                options,
                scheduler,
                on_exit=lambda status: _driver_died(store, audit_log, status),
            )
            driver = process
            try:
                address = process.start() if run_jobs else (scheduler or "")
            except BaseException:
                store.close()
                audit_log.close()
                raise
        else:
            if client is None:
                from adp.cluster import connect

                client = connect(scheduler) if scheduler else connect()
                own_client = True
            address = str(client.scheduler_info()["address"])
            driver = JobDriver(
                store,
                address,
                audit_log,
                max_running=options.max_running,
                reports_dir=reports,
                authorize=control.start_denial,
                quality=control.quality_gate,
            )
            if run_jobs:
                driver.start()
        control._wake = driver.wake
        warming.join()
        service = cls(
            store=store,
            audit_log=audit_log,
            policy=policy,
            verifier=verifier,
            driver=driver,
            control=control,
            scheduler_address=address,
            state_dir=state_dir,
            options=options,
            client=client,
            interrupted=[r.id for r in interrupted],
        )
        service._own_client = own_client
        return service

    _own_client: bool = False
    _closed: bool = False

    def close(self, timeout: float = 60.0) -> None:
        """Stop the driver (running jobs end ``interrupted``), then release everything
        (once: later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self.driver.stop(timeout)
        if self._own_client:
            from adp.cluster.lost import close_client

            close_client(self.client)
        self.store.close()
        self.audit_log.close()


def _driver_died(store: JobStore, audit_log: AuditLog, status: int) -> None:
    interrupt_running(store, audit_log, f"{DRIVER_EXIT_REASON} (exit status {status})")


__all__ = ["DRIVER_EXIT_REASON", "RESTART_REASON", "Service", "interrupt_running"]
