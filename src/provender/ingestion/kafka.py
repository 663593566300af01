"""The Kafka :class:`~provender.ingestion.stream.StreamSource`: a consumer-group member and a dead-letter producer.

* Offsets are committed only by the loop, synchronously, after the batch is written
  (``enable.auto.commit`` is off); a new group starts at the earliest offset, so nothing that
  is already on the topic is missed.
* Several processes with the same ``group.id`` share the topic's partitions. With a static
  member id (``group.instance.id``), a restarted process takes its partitions back at once.
* Dead letters go to ``<topic><dead_letter_suffix>`` (``<topic>.dlq``), created on first use
  if missing, with the original key and value and these headers: ``provender.reason`` (a
  :class:`~provender.ingestion.rows.DeadLetterReason`), ``provender.error`` (the details),
  ``provender.topic``, ``provender.partition``, ``provender.offset`` and ``provender.table``,
  after the record's own headers. A letter too large for the producer
  (``stream.dead_letter_options``, e.g. ``message.max.bytes``) or the broker is sent once more
  as a truncated copy: the first :data:`TRUNCATED_BYTES` of its value and key, its own headers
  in order while they fit in :data:`TRUNCATED_HEADER_BYTES` (``provender.headers_dropped`` counts
  the rest), plus ``provender.truncated: true`` and ``provender.original_size`` (key and value
  bytes). If even that is refused, the record is logged (partition, offset, reason, size) and its
  offset committed: a record never blocks its partition.
* librdkafka's own log lines go to the ``provender.ingestion.kafka.librdkafka`` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from provender.definitions import KafkaSource
from provender.errors import BackendError
from provender.ingestion.stream import DeadLetter, Polled, RecordHeaders, RevokeHandler

if TYPE_CHECKING:
    from provender.config import StreamSection

log = logging.getLogger(__name__)
_client_log = logging.getLogger(f"{__name__}.librdkafka")

DEAD_LETTER_TIMEOUT_SECONDS = 30.0
TRUNCATED_BYTES = 1024
"""How much of a too-large record's value (and key) its dead-letter copy keeps."""
TRUNCATED_HEADER_BYTES = 4096
"""How many bytes of a too-large record's own headers (names and values) its dead-letter copy keeps."""
_ERROR_CHARS = 1000
_WARN_EVERY_SECONDS = 60.0
# A commit refused because the group moved on: the partition's new owner re-reads the records.
_COMMIT_AFTER_REBALANCE = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._STATE,
    }
)
_QUIET_ERRORS = frozenset({KafkaError._PARTITION_EOF})
FETCH_QUEUE_BACKOFF_MS = 20


class KafkaStream:
    """Read a :class:`~provender.definitions.KafkaSource` as a consumer-group member.

    Args:
        source: the topic and its brokers.
        group_id: the consumer group.
        instance_id: optional static member id (``group.instance.id``).
        table: the feature table's name (for dead-letter headers and client ids).
        options: the ``stream:`` settings (session timeout, dead-letter suffix, extra
            librdkafka properties).
    """

    def __init__(
        self,
        source: KafkaSource,
        *,
        group_id: str,
        instance_id: str | None,
        table: str,
        options: StreamSection,
    ) -> None:
        self.topic = source.topic
        self.dead_letter_topic = f"{source.topic}{options.dead_letter_suffix}"
        self._table = table
        self._dead_letter_options = options.dead_letter_options
        self._common: dict[str, Any] = {
            "bootstrap.servers": source.bootstrap_servers,
            "client.id": f"provender-{table}",
            "logger": _client_log,
            **dict(options.consumer_options),
        }
        config: dict[str, Any] = {
            # Fetch ahead a bounded amount, and resume soon once the job has taken some (both
            # may be overridden in consumer_options; see StreamSection.prefetch_rows).
            "queued.min.messages": options.prefetch,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            **self._common,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": options.session_timeout_ms,
            "fetch.wait.max.ms": options.fetch_wait_max_ms,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
        }
        if instance_id:
            config["group.instance.id"] = instance_id
        try:
            self._consumer = Consumer(config)
        except KafkaException as exc:
            raise BackendError(f"cannot create a Kafka consumer for {self.topic!r}: {exc}") from None
        self._producer: Producer | None = None
        self._assigned: set[int] = set()
        self._fatal: KafkaError | None = None
        self._warned_at: dict[int, float] = {}
        self._committed: dict[int, int] = {}

    # -- StreamSource

    def subscribe(self, on_revoke: RevokeHandler) -> None:
        """Join the group and subscribe to the topic."""

        def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
            self._assigned |= {tp.partition for tp in partitions}
            log.info("partitions assigned topic=%s partitions=%s", self.topic, sorted(self._assigned))

        def revoked(_: Consumer, partitions: list[TopicPartition]) -> None:
            on_revoke([tp.partition for tp in partitions], False)
            self._assigned -= {tp.partition for tp in partitions}

        def lost(_: Consumer, partitions: list[TopicPartition]) -> None:
            on_revoke([tp.partition for tp in partitions], True)
            self._assigned -= {tp.partition for tp in partitions}

        self._consumer.subscribe([self.topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def poll(self, max_records: int, timeout_seconds: float) -> Polled:
        """Return up to ``max_records`` messages within ``timeout_seconds``."""
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_seconds)
        except KafkaException as exc:
            raise BackendError(f"Kafka consumer of {self.topic!r} failed: {exc}", retryable=True) from exc
        if self._fatal is not None:
            raise BackendError(f"Kafka consumer of {self.topic!r} failed for good: {self._fatal.str()}")
        if any(m.error() is not None for m in messages):
            messages = self._drop_errors(messages)
        return Polled(
            [m.value() for m in messages],
            [m.partition() or 0 for m in messages],
            [m.offset() or 0 for m in messages],
            [m.key() for m in messages],
            [_record_headers(m) for m in messages],
        )

    def commit(self, offsets: Mapping[int, int], *, wait: bool = True) -> None:
        """Commit the next offsets per partition; without ``wait``, in the background."""
        partitions = [TopicPartition(self.topic, partition, offset) for partition, offset in offsets.items()]
        try:
            if not wait:  # the outcome arrives in _on_commit, from a later poll
                self._consumer.commit(offsets=partitions, asynchronous=True)
                self._committed.update(offsets)
                return
            results = self._consumer.commit(offsets=partitions, asynchronous=False) or []
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() in _COMMIT_AFTER_REBALANCE:
                log.warning(
                    "commit refused after a rebalance topic=%s error=%s (records will be re-read)", self.topic, error
                )
                return
            retryable = error is None or error.retriable()
            raise BackendError(f"commit to {self.topic!r} failed: {exc}", retryable=retryable) from None
        self._committed.update(offsets)
        self._on_commit(None, results)

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish ``letters`` to the dead-letter topic and wait until the broker has them all.

        A letter too large for the producer or the broker is published as a truncated copy
        (see the module docstring); if even that is refused, it is logged (partition, offset,
        reason, size) and counted as dead-lettered, so a record never blocks its partition.

        Raises:
            BackendError: the broker did not take the letters (retryable: the batch is retried).
        """
        producer = self._dead_letter_producer()
        failures: list[str] = []
        too_large: list[DeadLetter] = []
        for letter in letters:
            if not self._produce(producer, letter, self._headers(letter), failures, too_large):
                too_large.append(letter)
        self._flush(producer, failures)
        retry, too_large = too_large, []
        for letter in retry:
            if not self._produce(producer, letter, self._headers(letter, truncated=True), failures, too_large):
                too_large.append(letter)
        self._flush(producer, failures)
        for letter in too_large:
            log.error(
                "dead letter refused even truncated; recorded here only table=%s topic=%s partition=%d offset=%d "
                "reason=%s size=%d",
                self._table,
                self.topic,
                letter.partition,
                letter.offset,
                letter.reason,
                _size(letter),
            )

    def _headers(self, letter: DeadLetter, *, truncated: bool = False) -> list[tuple[str, str | bytes | None]]:
        own = list(letter.headers or ())
        dropped = 0
        if truncated:  # the record's own headers while they fit: they may be what made it too large
            kept, size = [], 0
            for name, value in own:
                size += len(name) + (0 if value is None else len(value))
                if size > TRUNCATED_HEADER_BYTES:
                    break
                kept.append((name, value))
            own, dropped = kept, len(own) - len(kept)
        headers: list[tuple[str, str | bytes | None]] = [
            *own,
            ("provender.reason", str(letter.reason).encode()),
            ("provender.error", letter.error[:_ERROR_CHARS].encode()),
            ("provender.topic", self.topic.encode()),
            ("provender.partition", str(letter.partition).encode()),
            ("provender.offset", str(letter.offset).encode()),
            ("provender.table", self._table.encode()),
        ]
        if truncated:
            headers.append(("provender.truncated", b"true"))
            headers.append(("provender.original_size", str(_size(letter)).encode()))
            if dropped:
                headers.append(("provender.headers_dropped", str(dropped).encode()))
        return headers

    def _produce(
        self,
        producer: Producer,
        letter: DeadLetter,
        headers: list[tuple[str, str | bytes | None]],
        failures: list[str],
        too_large: list[DeadLetter],
    ) -> bool:
        """Queue one letter (truncated if its headers say so); False if the producer refuses its size."""
        truncated = any(name == "provender.truncated" for name, _ in headers)
        value, key = letter.value, letter.key
        if truncated:
            value = None if value is None else value[:TRUNCATED_BYTES]
            key = None if key is None else key[:TRUNCATED_BYTES]

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is None:
                return
            if error.code() == KafkaError.MSG_SIZE_TOO_LARGE:  # the broker's limit
                too_large.append(letter)
            else:
                failures.append(str(error))

        while True:
            try:
                producer.produce(self.dead_letter_topic, value=value, key=key, headers=headers, on_delivery=delivered)
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    return False
                message = f"dead letters to {self.dead_letter_topic!r} failed: {exc}"
                raise BackendError(message, retryable=True) from None
            else:
                return True

    def _flush(self, producer: Producer, failures: list[str]) -> None:
        remaining = producer.flush(DEAD_LETTER_TIMEOUT_SECONDS)
        if remaining or failures:
            detail = failures[0] if failures else f"{remaining} not delivered in {DEAD_LETTER_TIMEOUT_SECONDS:.0f} s"
            raise BackendError(f"dead letters to {self.dead_letter_topic!r} failed: {detail}", retryable=True)

    def lag(self) -> dict[int, int]:
        """Records not consumed yet per assigned partition (high watermark minus position)."""
        if not self._assigned:
            return {}
        partitions = [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
        try:
            positions = {tp.partition: tp.offset for tp in self._consumer.position(partitions)}
            unknown = [tp for tp in partitions if positions[tp.partition] < 0 and tp.partition not in self._committed]
            if unknown:  # nothing consumed yet in this session: start from the group's committed offsets
                for tp in self._consumer.committed(unknown, timeout=2.0):
                    self._committed[tp.partition] = tp.offset
        except KafkaException:
            return {}
        lag: dict[int, int] = {}
        for tp in partitions:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            except KafkaException:
                continue
            position = positions[tp.partition]
            if position < 0:
                position = self._committed.get(tp.partition, -1)
            if position < 0:
                position = low
            if high >= 0 and position >= 0:
                lag[tp.partition] = max(0, high - position)
        return lag

    def close(self) -> None:
        """Leave the group (its partitions move to the other members at once) and flush dead letters."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the Kafka consumer of %s failed: %s", self.topic, exc)
        if self._producer is not None:
            self._producer.flush(DEAD_LETTER_TIMEOUT_SECONDS)

    # -- internals

    def _drop_errors(self, messages: list[Message]) -> list[Message]:
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.fatal():
                raise BackendError(f"Kafka consumer of {self.topic!r} failed for good: {error.str()}")
            elif error.code() not in _QUIET_ERRORS:
                self._warn(error)
        return kept

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Log a refused commit: its records are re-read later (by us or by the new owner), never lost."""
        failed = [f"{tp.partition}: {tp.error}" for tp in partitions if tp.error is not None]
        if error is not None or failed:
            log.warning("commit refused topic=%s error=%s partitions=%s", self.topic, error, failed)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        self._warn(error)

    def _warn(self, error: KafkaError) -> None:
        """Log a client error, at most once a minute per error code (they repeat while it lasts)."""
        now = time.monotonic()
        if now - self._warned_at.get(error.code(), -_WARN_EVERY_SECONDS) >= _WARN_EVERY_SECONDS:
            self._warned_at[error.code()] = now
            log.warning("kafka topic=%s error=%s", self.topic, error.str())

    def _dead_letter_producer(self) -> Producer:
        if self._producer is None:
            self._ensure_topic(self.dead_letter_topic)
            self._producer = Producer(
                {
                    **self._common,
                    "acks": "all",
                    "linger.ms": 5,
                    "enable.idempotence": True,
                    **dict(self._dead_letter_options),
                }
            )
        return self._producer

    def _ensure_topic(self, topic: str) -> None:
        """Create ``topic`` (1 partition, the broker's replication factor) unless it exists."""
        admin = AdminClient(self._common)
        try:
            if topic in admin.list_topics(timeout=10).topics:
                return
            futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1)])
            futures[topic].result(timeout=10)
            log.info("created dead-letter topic %s", topic)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                log.warning("cannot create dead-letter topic %s (%s); relying on broker auto-creation", topic, exc)


def _size(letter: DeadLetter) -> int:
    return len(letter.value or b"") + len(letter.key or b"")


def _record_headers(message: Message) -> RecordHeaders:
    headers = message.headers()
    if headers is None:
        return None
    return list(headers.items()) if isinstance(headers, dict) else list(headers)
