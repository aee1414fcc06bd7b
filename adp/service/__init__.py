"""The ADP service: jobs submitted over HTTP and driven on a shared Dask cluster, verified
identity (JWT), roles and policy, and the team's web page (``adp serve``)."""
