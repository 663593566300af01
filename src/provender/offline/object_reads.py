"""S3 Parquet read by DuckDB's own Parquet reader, the bytes fetched by deltalake's object_store client.

DuckDB 2.0 has no httpfs extension to install here (see docs/sources.md), so a pyarrow dataset
over pyarrow's S3 filesystem was DuckDB's only way to read S3 Parquet. That costs two to three
times the CPU of reading the same files locally: pyarrow's scan goes row group by row group (a
batch, a filter evaluation and a conversion into DuckDB each), where DuckDB's reader, the one
that reads local files, decodes straight into its vectors; and the AWS C++ SDK costs more per
request than the Rust ``object_store`` client (benchmarks/results/sources.md).

So, where the ``deltalake`` and ``fsspec`` packages are installed (the ``s3`` extra), an S3
source's listed files are read with ``read_parquet`` like local files, through a read-only
filesystem registered once in the engine's DuckDB (:class:`ObjectReads`): every object is opened
with its listed size and time (no HEAD request) and fetched in ranged GETs:

- an object of at most :data:`WHOLE_OBJECT` bytes is fetched whole at its first read (one
  request: its footer and every column chunk a scan needs, which for small files is about all),
  while the read's objects fetched so are under half of :data:`CACHE_BYTES` (so they are still
  kept when the scan comes); past that, a first read near the end fetches the footer only;
- in a larger one, a read near the end fetches the last :data:`FOOTER` bytes (the footer and
  the metadata DuckDB asks for next), and a read elsewhere at least :data:`MIN_FETCH` bytes, so
  small column chunks close together (a narrow projection of many row groups) cost one request
  per MiB, not one each, as :data:`~provender.offline.objectstore.READ_COALESCING` does for pyarrow;
- fetched ranges are shared by every handle (DuckDB opens a file once per query binding the
  scan and once to scan it, and reads row groups from several threads): a range is fetched
  once while kept (:data:`CACHE_BYTES`), and a read that a fetch in flight covers waits for it.

Listing, pruning, credentials and lineage are those of :mod:`provender.offline.objectstore`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from provender.offline.lineage import InputFile
from provender.offline.objectstore import ObjectStore, split_url

if TYPE_CHECKING:
    from deltalake._internal import DeltaFileSystemHandler

WHOLE_OBJECT = 2 << 20
"""Objects up to this size are fetched whole at their first read (a request costs about as long
as transferring 1 to 4 MiB)."""
FOOTER = 64 << 10
"""A read within this many bytes of an object's end fetches them all (pyarrow's footer guess)."""
MIN_FETCH = 1 << 20
"""A smaller read elsewhere fetches this many bytes from where it starts."""
CACHE_BYTES = 256 << 20
"""At most this many fetched bytes are kept for reuse (per database, least recently used dropped)."""
KEPT_READS = 64
"""The reads whose listings are kept (see :class:`ObjectReads`)."""
PREFETCH_THREADS = 8
"""Objects whose first bytes are fetched at once when a read is added (see :meth:`ObjectReads._prefetch`)."""


_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def available() -> bool:
    """Whether S3 Parquet can be read this way (``deltalake`` and ``fsspec`` are installed)."""
    try:
        import deltalake._internal  # noqa: F401
        import fsspec  # noqa: F401
    except ImportError:
        return False
    return True


def serves(path: str) -> bool:
    """Whether the Parquet files under ``path`` are read this way (an ``s3://`` URL, :func:`available`)."""
    return urlsplit(path).scheme == "s3" and available()


class FetchedRanges:
    """The byte ranges fetched, shared by every handle on the objects.

    DuckDB opens an object several times in one read (once per query that binds the scan, once
    to scan it) and reads its row groups from several threads at once: a read that a kept range
    holds costs nothing, and one that a range being fetched will hold waits for it instead of
    fetching it again. At most ``limit`` bytes are kept, the least recently used dropped first.
    """

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._by_object: dict[str, dict[int, bytes]] = {}
        self._order: OrderedDict[tuple[str, int], None] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._fetched: dict[str, set[str]] = {}  # by read: objects with a fetch started (first read past)
        self._whole: dict[str, int] = {}  # by read: bytes of objects fetched whole at their first read
        self._pending: dict[str, list[tuple[int, int, threading.Event]]] = {}

    def read(
        self,
        key: str,
        start: int,
        end: int,
        span: Callable[[int, int, bool], tuple[int, int]],
        fetch: Callable[[int, int], bytes],
    ) -> bytes:
        """Bytes ``[start, end)`` of ``key``: kept, fetched by another thread, or ``fetch``-ed here.

        ``key`` is ``read/...``: the read it belongs to, then the object. ``span(start, end,
        whole)`` says which range to fetch (``whole``: nothing of the object was fetched yet, and
        the read's objects fetched whole at their first read are under half of ``limit``, so they
        stay kept until the scan: past that, binding a scan fetches footers only, and the scan the
        rest); ``fetch(first, last)`` fetches it.
        """
        while True:
            with self._lock:
                data = self._kept(key, start, end)
                if data is not None:
                    return data
                pending = self._pending.setdefault(key, [])
                wait = next((event for first, last, event in pending if first <= start and end <= last), None)
                if wait is None:
                    read = key.split("/", 1)[0]
                    started = self._fetched.setdefault(read, set())
                    whole = key not in started and self._whole.get(read, 0) < self._limit // 2
                    first, last = span(start, end, whole)
                    if whole:
                        self._whole[read] = self._whole.get(read, 0) + last - first
                    mine = (first, last, threading.Event())
                    pending.append(mine)
                    started.add(key)
            if wait is None:
                break
            wait.wait()  # then kept (or, if that fetch failed or was dropped, fetched here)
        try:
            fetched = fetch(first, last)
            self._keep(key, first, fetched)
        finally:
            with self._lock:
                pending.remove(mine)
                if not pending:
                    self._pending.pop(key, None)
            mine[2].set()
        return fetched[start - first : end - first]

    def forget(self, read: str) -> None:
        """Drop what was fetched for ``read`` (the prefix of its keys)."""
        with self._lock:
            for key in self._fetched.pop(read, set()):
                for first, data in self._by_object.pop(key, {}).items():
                    self._bytes -= len(data)
                    self._order.pop((key, first), None)
            self._whole.pop(read, None)

    def _kept(self, key: str, start: int, end: int) -> bytes | None:
        for first, data in self._by_object.get(key, {}).items():
            if first <= start and end <= first + len(data):
                self._order.move_to_end((key, first))
                return data[start - first : end - first]
        return None

    def _keep(self, key: str, first: int, data: bytes) -> None:
        with self._lock:
            kept = self._by_object.setdefault(key, {})
            self._bytes += len(data) - len(kept.get(first, b""))
            kept[first] = data
            self._order[(key, first)] = None
            self._order.move_to_end((key, first))
            while self._bytes > self._limit and len(self._order) > 1:
                (name, at), _ = self._order.popitem(last=False)
                self._bytes -= len(self._by_object[name].pop(at))
                if not self._by_object[name]:
                    del self._by_object[name]


class ObjectFile:
    """An object opened for DuckDB: positional reads served through the shared :class:`FetchedRanges`.

    DuckDB seeks, then reads, and may do so from several threads on one handle: the position is
    kept per thread. Each fetch opens its own client handle (no request: the size is known), so
    distinct ranges of a large object are fetched in parallel.
    """

    def __init__(self, open_handle: Callable[[], Any], key: str, size: int, ranges: FetchedRanges) -> None:
        self._open_handle = open_handle
        self._key = key
        self._size = size
        self._ranges = ranges
        self._position = threading.local()
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move this thread's position (``whence``: 0 from the start, 1 from here, 2 from the end)."""
        base = (0, self.tell(), self._size)[whence]
        self._position.at = base + offset
        return int(self._position.at)

    def tell(self) -> int:
        """This thread's position."""
        return int(getattr(self._position, "at", 0))

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative) from this thread's position."""
        start = self.tell()
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        if end <= start:
            return b""
        data = self._ranges.read(self._key, start, end, self._span, self._fetch)
        self._position.at = end
        return data

    def _span(self, start: int, end: int, whole: bool) -> tuple[int, int]:
        """The range to fetch for a read of ``[start, end)`` (``whole``: a first fetch that may take all)."""
        if self._size <= WHOLE_OBJECT and (whole or start < self._size - FOOTER):
            return 0, self._size
        if end > self._size - FOOTER:
            return min(start, max(0, self._size - FOOTER)), self._size
        return start, min(self._size, max(end, start + MIN_FETCH))

    def _fetch(self, first: int, last: int) -> bytes:
        try:
            handle = self._open_handle()
            try:
                handle.seek(first)
                data: bytes = handle.read(last - first)
            finally:
                handle.close()
        except OSError as exc:  # the client's message spans lines, in terminal colours: its first line
            cause = _COLOURS.sub("", str(exc)).strip().splitlines()
            url = "s3://" + self._key.split("/", 1)[-1]
            raise type(exc)(f"cannot read {url}: {cause[0] if cause else type(exc).__name__}") from None
        return data

    def readable(self) -> bool:
        """Yes."""
        return True

    def seekable(self) -> bool:
        """Yes."""
        return True

    def close(self) -> None:
        """Nothing to release: each fetch closes its own handle; fetched ranges stay shared."""
        self.closed = True

    def __enter__(self) -> ObjectFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _read_last_byte(file: ObjectFile) -> None:
    with contextlib.suppress(OSError):  # a failed prefetch: DuckDB's own read fails or succeeds
        file.seek(-1, 2)
        file.read(1)


@dataclass(frozen=True, slots=True)
class _Read:
    """One read's listed objects (by key in ``bucket``) and the client that knows their sizes."""

    store: str
    bucket: str
    files: Mapping[str, InputFile]
    client: Any


class ObjectReads:
    """The S3 objects DuckDB may open, for one database: one filesystem, registered once.

    Each read adds its listed objects (:meth:`add`) and gets URLs naming the read; their sizes
    and times come from the listing, their bytes through a client built for that read. The last
    :data:`KEPT_READS` reads are kept: an object of an older read, should DuckDB open it still,
    is looked up with a HEAD request instead (slower, never wrong). Secrets stay in the client
    options, never in a URL.
    """

    def __init__(self) -> None:
        import fsspec  # the base class DuckDB's register_filesystem wants

        reads = self

        class Objects(fsspec.AbstractFileSystem):  # type: ignore[misc]  # fsspec is untyped
            cachable = False
            protocol = f"provender-s3-{uuid.uuid4().hex[:12]}"

            def info(self, path: str, **_: object) -> dict[str, object]:
                name, size, _modified, _opener = reads.locate(path)
                return {"name": name, "size": size, "type": "file"}

            def exists(self, path: str, **_: object) -> bool:
                try:
                    reads.locate(path)
                except FileNotFoundError:
                    return False
                return True

            def glob(self, path: str, **_: object) -> list[str]:
                return [path] if self.exists(path) else []

            def modified(self, path: str) -> datetime:
                return reads.locate(path)[2]

            def _open(self, path: str, mode: str = "rb", **_: object) -> ObjectFile:
                if mode != "rb":
                    raise PermissionError(f"{path}: objects are opened for reading only")
                name, size, _modified, opener = reads.locate(path)
                return ObjectFile(opener, name, size, reads.ranges)

        self.filesystem = Objects()
        self.protocol: str = Objects.protocol
        self.ranges = FetchedRanges()
        self._prefetcher = ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="provender-s3-prefetch")
        self._lock = threading.Lock()
        self._stores: dict[tuple[tuple[str, str], ...], str] = {}
        self._reads: OrderedDict[str, _Read] = OrderedDict()
        self._url = re.compile(re.escape(self.protocol) + r"://[0-9a-f]+/s[0-9]+/")

    def add(self, store: ObjectStore, files: Sequence[InputFile]) -> list[str]:
        """The URLs under which DuckDB reads ``files`` (listed objects of one bucket of ``store``)."""
        from deltalake._internal import DeltaFileSystemHandler

        bucket = split_url(files[0].path)[0]
        known = {split_url(f.path)[1].removeprefix(bucket + "/"): f for f in files}
        sizes = {key: f.size for key, f in known.items() if f.size is not None}
        client = DeltaFileSystemHandler(f"s3://{bucket}", options=dict(store.client_options), known_sizes=sizes)
        read = uuid.uuid4().hex[:12]
        with self._lock:
            store_id = self._stores.setdefault(store.client_options, f"s{len(self._stores)}")
            self._reads[read] = _Read(store_id, bucket, known, client)
            while len(self._reads) > KEPT_READS:
                dropped, _ = self._reads.popitem(last=False)
                self.ranges.forget(dropped)
        self._prefetch(read, bucket, client, [(key, f.size) for key, f in known.items() if f.size is not None])
        return [f"{self.protocol}://{read}/{store_id}/{bucket}/{key}" for key in known]

    def _prefetch(self, read: str, bucket: str, client: DeltaFileSystemHandler, sizes: list[tuple[str, int]]) -> None:
        """Start fetching what DuckDB reads first of each object, :data:`PREFETCH_THREADS` at a time.

        Binding a scan, DuckDB reads every file's footer, one file after another; fetched here
        concurrently first (whole objects up to :data:`WHOLE_OBJECT`, else the last
        :data:`FOOTER` bytes), its reads find them kept or in flight and wait for them instead
        of each paying a round trip in turn. At most half of :data:`CACHE_BYTES` is prefetched
        per read, so nothing prefetched pushes out what another was.
        """
        budget = CACHE_BYTES // 2
        for key, size in sizes:
            budget -= size if size <= WHOLE_OBJECT else FOOTER
            if budget < 0:
                break
            file = ObjectFile(
                functools.partial(client.open_input_file, key), f"{read}/{bucket}/{key}", size, self.ranges
            )
            self._prefetcher.submit(_read_last_byte, file)

    def locate(self, path: str) -> tuple[str, int, datetime, Callable[[], Any]]:
        """The cache name, size, time and a handle opener of the object ``path`` (a URL from :meth:`add`)."""
        read_id, store_id, bucket, key = path.removeprefix(f"{self.protocol}://").split("/", 3)
        with self._lock:
            read = self._reads.get(read_id)
            options = next((dict(o) for o, s in self._stores.items() if s == store_id), None)
        listed = None if read is None else read.files.get(key)
        if read is not None and listed is not None and listed.size is not None:
            client = read.client
            size, modified = listed.size, listed.modified
        elif options is not None:  # a read no longer kept: ask the store
            from deltalake._internal import DeltaFileSystemHandler

            client = DeltaFileSystemHandler(f"s3://{bucket}", options=options)
            (info,) = client.get_file_info([key])
            if info.size is None:
                raise FileNotFoundError(f"s3://{bucket}/{key}")
            size, modified = info.size, info.mtime
        else:
            raise FileNotFoundError(path)
        when = modified or datetime(1970, 1, 1, tzinfo=UTC)
        return f"{read_id}/{bucket}/{key}", size, when, lambda: client.open_input_file(key)

    def close(self) -> None:
        """Stop prefetching (fetches under way finish; none queued starts)."""
        self._prefetcher.shutdown(wait=False, cancel_futures=True)

    def scrub(self, text: str) -> str:
        """``text`` with this filesystem's URLs written back as ``s3://`` ones."""
        return self._url.sub("s3://", text)
