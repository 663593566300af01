"""An in-memory stream source: the stream loop's real collaborator without a broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from provender.ingestion.stream import DeadLetter, Polled, RevokeHandler


class MemoryStream:
    """A StreamSource over in-memory partitions: one consumer, committed offsets, dead letters."""

    topic = "trips"

    def __init__(self, partitions: int = 2) -> None:
        self.log: dict[int, list[tuple[bytes | None, bytes | None]]] = {p: [] for p in range(partitions)}
        self.position = dict.fromkeys(self.log, 0)
        self.committed: dict[int, int] = {}
        self.commits: list[dict[int, int]] = []
        self.dead_letters: list[DeadLetter] = []
        self.on_revoke: RevokeHandler | None = None
        self.closed = False
        self.lock = threading.Lock()
        self.before_poll: Callable[[], None] = lambda: None
        self.consumer_thread: threading.Thread | None = None

    def produce(self, record: dict[str, object] | bytes, partition: int = 0) -> None:
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        with self.lock:
            self.log[partition].append((None, value))

    def subscribe(self, on_revoke: RevokeHandler) -> None:
        self.on_revoke = on_revoke

    def poll(self, max_records: int, timeout_seconds: float) -> Polled:
        self.consumer_thread = threading.current_thread()
        self.before_poll()
        deadline = time.monotonic() + timeout_seconds
        out = Polled([], [], [], [], [])
        while True:
            with self.lock:
                for partition, records in self.log.items():
                    while self.position[partition] < len(records) and len(out.values) < max_records:
                        key, value = records[self.position[partition]]
                        out.values.append(value)
                        out.partitions.append(partition)
                        out.offsets.append(self.position[partition])
                        out.keys.append(key)
                        out.headers.append(None)
                        self.position[partition] += 1
            if len(out.values) >= max_records or time.monotonic() >= deadline:
                return out
            time.sleep(0.001)

    def commit(self, offsets: Mapping[int, int], *, wait: bool = True) -> None:
        # A Kafka consumer belongs to one thread: commits must come from the polling thread.
        assert threading.current_thread() is self.consumer_thread
        self.committed.update(offsets)
        self.commits.append(dict(offsets))

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(letters)

    def lag(self) -> dict[int, int]:
        return {p: len(records) - self.position[p] for p, records in self.log.items()}

    def close(self) -> None:
        self.closed = True

    def revoke(self, lost: bool = False) -> None:
        """Simulate a rebalance: the handler runs as it would inside poll, then positions reset."""
        assert self.on_revoke is not None
        self.on_revoke(list(self.log), lost)
        self.position = {p: self.committed.get(p, 0) for p in self.log}
