"""s3fs with one retry budget: botocore's, not botocore's times s3fs's.

s3fs wraps every S3 call (and every read of a response body) in a loop of its own,
:attr:`s3fs.S3FileSystem.retries` attempts (5) with backoff, around botocore, which retries
too. With ADP's bounded botocore settings (:func:`adp.io.s3.with_timeouts`: 3 s to connect,
4 s to read, 2 attempts) a hung endpoint still took five times as long to fail as botocore
alone, ~45 s instead of ~9 s. s3fs has no option for its loop, only the class attribute, and
an attribute set on an instance is lost when dask ships the file system to its workers
(fsspec pickles an instance as its class and init options).

:class:`BoundedS3FileSystem` makes that loop a single attempt whenever the options configure
botocore's retries (``config_kwargs["retries"]``, which :func:`~adp.io.s3.with_timeouts`
always sets): botocore's retries, bounded by ``adp.io.retries``, are then the only ones.
:func:`adp.io.s3.with_timeouts` registers it as fsspec's ``s3`` and ``s3a`` implementation,
so every file system opened from those options on the client, and every copy of one on a
worker, is bounded. Without ``config_kwargs["retries"]`` it behaves exactly as s3fs.

This module imports s3fs (about half a second), so it is imported only when S3 is used.
"""

from __future__ import annotations

from typing import Any

import s3fs

__all__ = ["BoundedS3FileSystem"]


class BoundedS3FileSystem(s3fs.S3FileSystem):
    """:class:`s3fs.S3FileSystem` whose own retry loop yields to botocore's configured one.

    Takes the same parameters as :class:`s3fs.S3FileSystem`. When ``config_kwargs`` holds
    ``retries`` (botocore's retry settings), each S3 call is one attempt of s3fs's loop,
    retried only by botocore; otherwise s3fs's default of 5 attempts applies.

    Examples
    --------
    >>> fs = BoundedS3FileSystem(anon=True, config_kwargs={"retries": {"total_max_attempts": 2}})
    >>> fs.retries
    1
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.config_kwargs, dict) and "retries" in self.config_kwargs:
            self.retries = 1
