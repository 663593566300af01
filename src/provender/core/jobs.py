"""The job service inside the core service: jobs run with ``run_on="core"``, and the reaper.

A job submitted with ``client.start_offline_to_online_ingestion(..., run_on="core")`` runs in
this process, with the service's own settings (its online store and offline engine), so the
submitter needs no store credentials and may go away: the job is recorded in the registry and
reports its progress there like any other. The reaper fails, every ``jobs.heartbeat_seconds``,
the RUNNING jobs (of any runner) whose heartbeat is older than ``jobs.stale_after_seconds``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from provender.client import Client
from provender.client.jobs import runner_name
from provender.config import Settings, validate_settings
from provender.core.metrics import CoreMetrics
from provender.errors import ProvenderError
from provender.registry.jobs import JobKind, JobRecord
from provender.registry.store import RegistryStore

log = logging.getLogger(__name__)


class CoreJobs:
    """Runs jobs in the core service and fails those whose runner died.

    Args:
        settings: the service's settings (its stores run the jobs).
        store: the registry (for the reaper).
        metrics: where started and reaped jobs are counted.
    """

    def __init__(self, settings: Settings, store: RegistryStore, *, metrics: CoreMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.runner = runner_name("core:")
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def start(self) -> None:
        """Start the reaper thread."""
        self._reaper = threading.Thread(target=self._reap, name="provender-core-reaper", daemon=True)
        self._reaper.start()

    def start_ingestion(
        self,
        project: str,
        table: str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int,
        validation_policy: str | None = None,
    ) -> JobRecord:
        """Start an offline-to-online ingestion job here; return its (PENDING or RUNNING) record.

        ``validation_policy`` overrides the table's for this job (None: the table's).
        """
        job = self._client(project).start_offline_to_online_ingestion(
            table, start=start, end=end, batch_rows=batch_rows, validation_policy=validation_policy
        )
        self.metrics.jobs_started.labels(JobKind.OFFLINE_TO_ONLINE.value).inc()
        log.info("job started job=%s project=%s table=%s", job.id, project, table)
        return self.store.get_job(job.id)

    def _client(self, project: str) -> Client:
        with self._lock:
            client = self._clients.get(project)
            if client is None:
                settings = validate_settings({**dict(self.settings), "project": project})
                client = self._clients[project] = Client(settings=settings)
                client.runner = self.runner
            return client

    def _reap(self) -> None:
        jobs = self.settings.jobs
        older_than = timedelta(seconds=jobs.stale_after_seconds)
        while not self._stop.wait(jobs.heartbeat_seconds):
            try:
                failed = self.store.fail_stale_jobs(older_than)
            except ProvenderError as exc:
                log.warning("reaper could not check jobs error=%s", exc)
                continue
            for job in failed:
                self.metrics.jobs_failed_stale.inc()
                log.warning("job failed: runner died job=%s runner=%s", job.id, job.runner)

    def stop(self) -> None:
        """Stop the reaper and close the jobs' clients (running jobs are left to the reaper of a replica)."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join()
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
