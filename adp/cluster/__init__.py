"""Clusters for ADP's work: :func:`connect` (an address, ``DASK_SCHEDULER_ADDRESS``, or a new
LocalCluster of processes) and :func:`cluster_for` (the context a job runs in).

Deployment files (Dask config for pods, Kubernetes manifests) live in the repository's
top-level ``cluster/`` folder.
"""

from adp.cluster.connect import cluster_for, connect

__all__ = ["cluster_for", "connect"]
