"""Spark's failures as Provender's errors, Spark's message kept; running an action in a job group."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from py4j.protocol import Py4JError, Py4JJavaError  # type: ignore[import-untyped]
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import SparkSession

from provender.errors import BackendError, DataError, ProvenderError

_T = TypeVar("_T")
_EXECUTOR_ERROR = re.compile(r"\[provender (?P<kind>\w+) retryable=(?P<retryable>[01])\] (?P<message>.*)", re.DOTALL)
_DATA_CONDITIONS = ("CAST_", "PATH_NOT_FOUND", "USER_RAISED_EXCEPTION", "DATETIME", "FAILED_READ_FILE", "PARQUET_")


def executor_error(exc: ProvenderError) -> RuntimeError:
    """Wrap an error raised on an executor so the driver can raise it again, same type and flags."""
    kind = "DataError" if isinstance(exc, DataError) else "BackendError"
    retryable = int(isinstance(exc, BackendError) and exc.retryable)
    return RuntimeError(f"[provender {kind} retryable={retryable}] {exc}")


def spark_message(exc: BaseException) -> str:
    """Spark's own message for ``exc``, without the JVM stack trace (or the Python worker's)."""
    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("at ")]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):  # keep the exception, not the frames
        last = max(n for n, ln in enumerate(lines) if ln.startswith("Traceback"))
        raised = [ln for ln in lines[last + 1 :] if not ln.startswith((" ", "\t"))]
        lines = [lines[0], *raised] if raised else lines
    return "\n".join(lines[:12]).strip()


def spark_error(exc: BaseException, what: str) -> ProvenderError:
    """Map a Spark failure to DataError (the data) or BackendError (Spark), keeping Spark's message."""
    message = spark_message(exc)
    marked = _EXECUTOR_ERROR.search(message)
    if marked is not None:  # a Provender error raised on an executor (see executor_error)
        if marked["kind"] == "DataError":
            return DataError(f"{what} failed on the data: {marked['message']}")
        return BackendError(f"{what} failed: {marked['message']}", retryable=marked["retryable"] == "1")
    condition = ""
    if isinstance(exc, PySparkException):
        get = getattr(exc, "getCondition", None) or exc.getErrorClass  # getCondition: Spark 4
        condition = str(get() or "")
    elif "[" in message:
        condition = message.split("[", 1)[1].split("]", 1)[0]
    if isinstance(exc, AnalysisException) or condition.startswith(_DATA_CONDITIONS) or "DataError" in message:
        return DataError(f"{what} failed on the data: {message}")
    return BackendError(f"{what} failed in Spark: {message}")


def run_in_group(session: SparkSession, group: str, description: str, action: Callable[[], _T]) -> _T:
    """Run a Spark action under job group ``group`` (so it can be cancelled); map its errors."""
    context = session.sparkContext
    context.setJobGroup(group, description, interruptOnCancel=True)
    try:
        return action()
    except (PySparkException, Py4JError) as exc:
        raise spark_error(exc, description) from exc
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
