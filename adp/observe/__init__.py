"""Observability: the audit trail, Prometheus metrics and ADP's Dask plugins.

Importing this package is cheap; each name loads its module on first use.

- :class:`AuditLog`, :func:`audited`, :class:`AuditRecord`, :class:`VerificationResult`:
  the append-only, hash-chained audit trail (:mod:`adp.observe.audit`);
  :func:`close_orphaned_jobs` closes jobs whose client died (:mod:`adp.observe.orphans`).
- :func:`report`, :func:`report_client`: send figures to the scheduler's ``adp_*`` metrics
  (:mod:`adp.observe.events`).
- :func:`install`: install the scheduler plugin on a running cluster; or preload
  ``adp.observe.plugins`` (:mod:`adp.observe.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__all__ = [
    "AuditLog",
    "AuditRecord",
    "VerificationResult",
    "audited",
    "close_orphaned_jobs",
    "install",
    "report",
    "report_client",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AuditLog": "adp.observe.audit",
        "AuditRecord": "adp.observe.records",
        "VerificationResult": "adp.observe.records",
        "audited": "adp.observe.audit",
        "close_orphaned_jobs": "adp.observe.orphans",
        "install": "adp.observe.plugins",
        "report": "adp.observe.events",
        "report_client": "adp.observe.events",
    },
)

if TYPE_CHECKING:
    from adp.observe.audit import AuditLog, audited
    from adp.observe.events import report, report_client
    from adp.observe.orphans import close_orphaned_jobs
    from adp.observe.plugins import install
    from adp.observe.records import AuditRecord, VerificationResult
