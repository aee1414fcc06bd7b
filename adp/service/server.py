"""The running service: its cluster connection, job store, audit trail, policy, token
verifier and job driver, put together from ``adp.service.*`` configuration.

A restarted service first marks every job its predecessor left ``running`` as
``interrupted`` (audited): nothing it did not see finish is ever shown as running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client

from adp.config import ServiceSettings, settings
from adp.observe.audit import AuditLog
from adp.service.control import JobControl
from adp.service.driver import JobDriver
from adp.service.identity import TokenVerifier
from adp.service.policy import Policy
from adp.service.store import JobStore

logger = logging.getLogger(__name__)

#: The reason given to jobs found ``running`` when the service starts.
RESTART_REASON = "the service stopped while the job ran (restarted); resume it to finish"


@dataclass
class Service:
    """Everything ``adp serve`` runs; build it with :meth:`start`, end it with :meth:`close`.

    Attributes
    ----------
    control : JobControl
        What callers may do (the API and the pages go through it).
    verifier : TokenVerifier
        Checks bearer tokens.
    client : distributed.Client
        The service's own client (its cluster, when it started one).
    """

    store: JobStore
    audit_log: AuditLog
    policy: Policy
    verifier: TokenVerifier
    driver: JobDriver
    control: JobControl
    client: Client
    state_dir: Path
    options: ServiceSettings
    interrupted: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        options: ServiceSettings | None = None,
        *,
        client: Client | None = None,
        run_jobs: bool = True,
    ) -> Service:
        """Open the state, connect to the cluster and start driving jobs.

        Parameters
        ----------
        options : ServiceSettings, optional
            Default: ``settings().service``.
        client : distributed.Client, optional
            Use this cluster instead of ``options.scheduler`` (or a new LocalCluster).
        run_jobs : bool, default True
            Start the driver (False: the API only, jobs stay queued).
        """
        from adp.cluster import connect

        cfg = settings()
        options = options or cfg.service
        state_dir = cfg.state_dir
        url = options.database or f"sqlite:///{state_dir / 'service.db'}"
        store = JobStore(url, state_dir=state_dir)
        audit_log = AuditLog()
        policy = Policy.from_yaml(options.policy) if options.policy else Policy.default()
        verifier = TokenVerifier.from_settings()
        verifier.check()  # a bad secret, PEM or JWKS stops the service now, not every request
        interrupted = store.interrupt_running(RESTART_REASON)
        for record in interrupted:
            store.log(record.id, f"interrupted: {RESTART_REASON}")
            audit_log.append(
                "service.restart",
                action="run",
                resource=f"job:{record.id}",
                outcome="interrupted",
                reason=RESTART_REASON,
                job_id=record.id,
                identity=record.owner,
                source="service",
            )
        own_client = client is None
        if client is None:
            client = connect(options.scheduler) if options.scheduler else connect()
        reports = state_dir / "service" / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        control = JobControl(store, policy, audit_log)
        driver = JobDriver(
            store,
            str(client.scheduler_info()["address"]),
            audit_log,
            max_running=options.max_running,
            reports_dir=reports,
            authorize=control.start_denial,
            quality=control.quality_gate,
        )
        control._wake = driver.wake
        service = cls(
            store=store,
            audit_log=audit_log,
            policy=policy,
            verifier=verifier,
            driver=driver,
            control=control,
            client=client,
            state_dir=state_dir,
            options=options,
            interrupted=[r.id for r in interrupted],
        )
        service._own_client = own_client
        if run_jobs:
            driver.start()
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


__all__ = ["RESTART_REASON", "Service"]
