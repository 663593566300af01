"""The distributed offline engine: Apache Spark (``offline: {engine: spark, master: ...}``).

Split by concern: :mod:`.session` (settings), :mod:`.columns` (shared column expressions),
:mod:`.schemas` (sources' schemas read on the driver), :mod:`.sources` (entity rows and
sources as frames), :mod:`.compile` (the plan as DataFrames), :mod:`.staging` (staged files),
:mod:`.failures` (Spark's errors), :mod:`.retrieval` (the job handle), :mod:`.executors`
(ingestion on the executors) and :mod:`.engine` (:class:`SparkEngine`, which ties them).
"""

from provender.offline.spark.engine import SparkEngine
from provender.offline.spark.retrieval import SparkRetrievalJob
from provender.offline.spark.session import SparkConfig, session_conf

__all__ = ["SparkConfig", "SparkEngine", "SparkRetrievalJob", "session_conf"]
