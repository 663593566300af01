"""The job service on the client's side: jobs recorded in the registry, wherever they run.

A job is recorded PENDING when it is submitted; its runner (this process, or the core service
for ``run_on="core"``) sets it RUNNING, records its progress and a heartbeat every
``jobs.heartbeat_seconds``, stops when a cancel is requested, and ends it SUCCEEDED, FAILED or
CANCELLED. A RUNNING job whose heartbeat is older than ``jobs.stale_after_seconds`` is failed
(its runner died), so no job is left RUNNING forever. :class:`Job` is a handle on a record:
``status``, ``rows_written``, ``error``, ``wait()``, ``cancel()``, from any process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from provender.errors import BackendError, JobStateError, PermissionDeniedError, ProvenderError
from provender.ingestion.validation import ValidationReport
from provender.offline.lineage import SourceInput
from provender.offline.lineage import from_json as lineage_from_json
from provender.registry.jobs import JobFields, JobKind, JobRecord, JobStatus, is_finished, new_job_id, utc_now
from provender.registry.store import RegistryStore

if TYPE_CHECKING:
    from provender.ingestion.stream import StreamIngestionJob

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


@runtime_checkable
class CoreJobSubmitter(Protocol):
    """A registry that can run jobs itself: the core service's (``registry: http://...``)."""

    def submit_ingestion(
        self,
        project: str,
        table: str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int,
        validation_policy: str | None = None,
    ) -> JobRecord:
        """Start an offline-to-online ingestion job in the service; return its record.

        ``validation_policy`` overrides the table's for this job (None: the table's).
        """
        ...


def runner_name(prefix: str = "") -> str:
    """Return where a job runs: ``<host>:<pid>`` (``core:<host>:<pid>`` in the core service)."""
    return f"{prefix}{socket.gethostname()}:{os.getpid()}"


def new_record(*, kind: JobKind, project: str, table: str, runner: str) -> JobRecord:
    """Return a PENDING job record created now."""
    return JobRecord(id=new_job_id(), kind=kind, project=project, table=table, created_at=utc_now(), runner=runner)


def cancel_job(store: RegistryStore, job_id: str) -> JobRecord:
    """Cancel a job: a PENDING one ends CANCELLED at once, a RUNNING one is asked to stop.

    A finished job is returned unchanged.
    """
    job = store.get_job(job_id)
    if is_finished(job.status):
        return job
    if job.status is JobStatus.PENDING:
        try:
            return store.update_job(
                job_id,
                if_status={JobStatus.PENDING},
                status=JobStatus.CANCELLED,
                cancel_requested=True,
                finished_at=utc_now(),
                error="cancelled before it started",
            )
        except JobStateError:
            pass  # it started meanwhile: ask its runner to stop it
    return store.update_job(job_id, cancel_requested=True)


class Job:
    """A handle on a recorded job (returned by ``get_job``, ``list_jobs`` and ``run_on="core"``).

    Attributes read the record as last fetched; :meth:`refresh` and :meth:`wait` fetch it again.
    """

    def __init__(
        self, store: RegistryStore, record: JobRecord, *, fail_stale: Callable[[], None] | None = None
    ) -> None:
        self._store = store
        self.record = record
        self._fail_stale = fail_stale

    @property
    def id(self) -> str:
        """The job's id."""
        return self.record.id

    @property
    def table(self) -> str:
        """The feature table the job works on ("" if none)."""
        return self.record.table

    @property
    def status(self) -> JobStatus:
        """PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED."""
        return self.record.status

    @property
    def rows_written(self) -> int:
        """Rows written (ingestion) or produced (retrieval) so far."""
        return self.record.rows

    @property
    def validation(self) -> ValidationReport | None:
        """The report of the table's expectations, as recorded (None if it declares none)."""
        recorded = self.record.validation
        return None if recorded is None else ValidationReport.from_dict(recorded)

    @property
    def error(self) -> str:
        """Why the job failed, or ""."""
        return self.record.error

    def lineage(self) -> tuple[SourceInput, ...]:
        """What the job read, as recorded: per feature table its files and Delta version.

        Empty for a job that recorded none (a stream job, one that failed before reading).
        """
        return () if self.record.lineage is None else lineage_from_json(self.record.lineage)

    @property
    def is_done(self) -> bool:
        """Whether the job has ended."""
        return is_finished(self.record.status)

    def refresh(self) -> Job:
        """Fetch the record again (failing it first if its runner stopped beating)."""
        if self._fail_stale is not None and self.record.status is JobStatus.RUNNING:
            self._fail_stale()
        self.record = self._store.get_job(self.record.id)
        return self

    def wait(self, timeout_seconds: float | None = None) -> Job:
        """Block until the job ends.

        Raises:
            TimeoutError: still running after ``timeout_seconds``.
            BackendError: the job FAILED (its error as the message).
            ProvenderError: the job was CANCELLED.
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        while not self.refresh().is_done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout_seconds} s")
            time.sleep(_POLL_SECONDS)
        if self.status is JobStatus.FAILED:
            raise BackendError(f"job {self.id} failed: {self.error}")
        if self.status is JobStatus.CANCELLED:
            raise ProvenderError(f"job {self.id} was cancelled: {self.error or 'on request'}")
        return self

    def cancel(self) -> None:
        """Cancel the job (a running one stops after the batch it is writing)."""
        self.record = cancel_job(self._store, self.record.id)

    def __repr__(self) -> str:
        r = self.record
        return f"Job(id={r.id!r}, kind={r.kind.value}, table={r.table!r}, status={r.status}, rows={r.rows})"


class JobReporter:
    """Reports a job running in this process to its registry record.

    :meth:`started` sets it RUNNING and starts a heartbeat thread that records ``progress()``
    every ``heartbeat_seconds`` and calls ``on_cancel`` once a cancel is requested;
    :meth:`finished` stops the thread and records the outcome. Registry failures are logged
    and retried at the next beat: they never fail the job itself.
    """

    def __init__(
        self,
        store: RegistryStore,
        record: JobRecord,
        *,
        heartbeat_seconds: float,
        progress: Callable[[], int],
        on_cancel: Callable[[], None],
    ) -> None:
        self.store = store
        self.record = record
        self._heartbeat_seconds = heartbeat_seconds
        self._progress = progress
        self._on_cancel = on_cancel
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self) -> None:
        """Set the job RUNNING and start beating."""
        now = utc_now()
        self.record = self.store.update_job(
            self.record.id, if_status={JobStatus.PENDING}, status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
        )
        if self.record.cancel_requested:
            self._on_cancel()
        self._thread = threading.Thread(target=self._beat, name=f"provender-heartbeat-{self.record.id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_seconds):
            try:
                self.record = self.store.update_job(
                    self.record.id,
                    if_status={JobStatus.RUNNING},
                    heartbeat_at=utc_now(),
                    rows=self._progress(),
                )
            except JobStateError:
                return  # ended elsewhere (failed as stale, or finished)
            except ProvenderError as exc:
                log.warning("job heartbeat failed job=%s error=%s", self.record.id, exc)
                continue
            if self.record.cancel_requested:
                self._on_cancel()

    def succeeded(self, rows: int, *, lineage: Mapping[str, object] | None = None) -> None:
        """Record the job SUCCEEDED with ``rows`` rows (a finished retrieval) and what it read."""
        self._progress = lambda: rows
        self.finished(JobStatus.SUCCEEDED, lineage=lineage)

    def failed(self, error: str) -> None:
        """Record the job FAILED with ``error``."""
        self.finished(JobStatus.FAILED, error=error)

    def finished(
        self,
        status: JobStatus,
        *,
        error: str = "",
        validation: Mapping[str, object] | None = None,
        statistics: Mapping[str, object] | None = None,
        lineage: Mapping[str, object] | None = None,
    ) -> None:
        """Stop beating and record the outcome (unless the job was ended elsewhere meanwhile).

        ``validation``, ``statistics`` and ``lineage`` (what it read) are the job's reports,
        recorded with it when given.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        changes: JobFields = {
            "status": status,
            "finished_at": utc_now(),
            "heartbeat_at": utc_now(),
            "rows": self._progress(),
            "error": error,
        }
        if validation is not None:
            changes["validation"] = validation
        if statistics is not None:
            changes["statistics"] = statistics
        if lineage is not None:
            changes["lineage"] = lineage
        try:
            self.record = self.store.update_job(
                self.record.id,
                if_status={JobStatus.RUNNING, JobStatus.PENDING},
                **changes,
            )
        except JobStateError as exc:
            log.warning("job ended elsewhere job=%s error=%s", self.record.id, exc)
        except ProvenderError as exc:
            log.error("could not record the end of job=%s status=%s error=%s", self.record.id, status, exc)


def track_run(
    store: RegistryStore,
    record: JobRecord,
    *,
    heartbeat_seconds: float,
    progress: Callable[[], int],
    on_cancel: Callable[[], None],
) -> JobReporter | None:
    """Record ``record`` and report it RUNNING from this process; None (with a warning) if refused.

    Used for jobs that run whatever the registry says (a retrieval, a stream), so a registry that
    refuses the record (a read-only token, an outage) never stops the work itself.
    """
    try:
        record = store.put_job(record)
    except (PermissionDeniedError, BackendError) as exc:
        log.warning("job not recorded kind=%s table=%s error=%s", record.kind.value, record.table, exc)
        return None
    reporter = JobReporter(store, record, heartbeat_seconds=heartbeat_seconds, progress=progress, on_cancel=on_cancel)
    reporter.started()
    return reporter


def stop_stream(job: StreamIngestionJob) -> None:
    """Stop a stream job (a cancel requested through its record)."""
    job.stop()


def report_stream_end(job: StreamIngestionJob, reporter: JobReporter) -> None:
    """Wait for a stream job to end and record how: CANCELLED if asked through its record, else its status."""
    job.wait_done()
    if reporter.record.cancel_requested:
        reporter.finished(JobStatus.CANCELLED)
    else:
        reporter.finished(JobStatus(job.status.value), error=error_text(job.error))


def error_text(error: BaseException | None) -> str:
    """The text recorded for a failed job: ``"<ErrorClass>: <message>"``, or ""."""
    return "" if error is None else f"{type(error).__name__}: {error}"
