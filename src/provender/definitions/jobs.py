"""Job states, shared by the engines that run jobs and the registry that records them."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job (a retrieval on a cluster, an ingestion) is in its life.

    Examples:
        >>> JobStatus.RUNNING.is_finished, JobStatus.CANCELLED.is_finished
        (False, True)
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_finished(self) -> bool:
        """Whether a job in this status has ended (it will not change status again)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
