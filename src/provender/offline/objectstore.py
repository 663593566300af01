"""Object-store sources and outputs (``s3://``, ``gs://``): credentials, listing with partition pruning, errors.

S3 credentials come from ``storage.s3`` in the settings, else from the standard AWS environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``), else, only with ``credential_chain: true``, from the machine's default
chain. GCS uses ``storage.gcs``: anonymous access, an access token, or Google's default
credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server); ``STORAGE_EMULATOR_HOST``
names an emulator. Secrets are held as :class:`~pydantic.SecretStr` and scrubbed from every
error message.

S3 files are listed one directory level at a time, so a pruned date partition
(``<column>=YYYY-MM-DD/``) is never listed beyond its own prefix; where nothing can be pruned
(no date range, or a level whose date partitions are all kept), what is below is listed in one
recursive listing (one request per 1,000 names) instead of one request per directory. pyarrow's
GCS filesystem only sees a "directory" level where directory marker objects exist (which most
writers do not create), so a GCS prefix is listed in one recursive listing of names, and pruned
partitions are dropped from it before anything is opened.

Parquet objects are read with their listed sizes (no HEAD request) and with range coalescing
sized for an object store (:data:`READ_COALESCING`): the column chunks a scan needs are fetched
in as few requests as the gaps between them allow, instead of one request per column chunk.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from provender.config import GcsStorage, S3Storage, StorageSection
from provender.definitions import CsvFormat, FileSource
from provender.errors import DataError
from provender.offline.files import DateRange, partition_date

_DEFAULT_REGION = "us-east-1"
_LISTING_THREADS = 16
READ_COALESCING = pa.CacheOptions(hole_size_limit=1 << 20, range_size_limit=64 << 20, lazy=True)
"""How Parquet reads from an object store are coalesced: gaps of up to 1 MiB between the needed
column chunks are read through (a request costs about as long as transferring 1 to 4 MiB), a
request asks for at most 64 MiB, and ranges are fetched when first needed (memory stays bounded
for large files). pyarrow's default, for local disks, cuts at 8 KiB gaps: a narrow projection of
a file with many row groups then costs one request per row group (benchmarks/sources.py)."""
SCHEMES = ("s3", "gs")
"""The object stores sources and outputs can be in."""


@dataclass(frozen=True, slots=True)
class ObjectStore:
    """An opened object store: its filesystem, its URL scheme and the secrets to scrub from messages."""

    filesystem: pafs.FileSystem
    scheme: str = "s3"
    secrets: tuple[str, ...] = field(default=(), repr=False)
    access_key_id: str | None = None
    client_options: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """The same store's settings as ``object_store`` (Rust) options, for deltalake's client (S3 only)."""

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def url(self, path: str) -> str:
        """The URL of ``path`` (``bucket/key``) in this store."""
        return f"{self.scheme}://{path}"


def is_object_store_url(path: object) -> bool:
    """Whether ``path`` is an ``s3://`` or ``gs://`` URL."""
    return isinstance(path, str) and urlsplit(path).scheme in SCHEMES


def open_store(
    url: str, storage: StorageSection | None, what: str, environ: Mapping[str, str] | None = None
) -> ObjectStore:
    """Open the object store ``url`` is in, with the ``storage`` settings (None: the environment only).

    Raises:
        DataError: an unsupported scheme, or missing or incomplete credentials (naming ``what``).
    """
    scheme = urlsplit(url).scheme
    storage = storage or StorageSection()
    if scheme == "s3":
        return open_s3(storage.s3, what, environ)
    if scheme == "gs":
        return open_gcs(storage.gcs, what, environ)
    raise DataError(f"{what}: {url!r} is not in a supported object store (s3://bucket/path or gs://bucket/path).")


def open_s3(storage: S3Storage | None, what: str, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """Open S3 with ``storage`` (settings) or the environment's credentials.

    Raises:
        DataError: no credentials are configured (and the default chain is not enabled), or only
            half of a key pair is.
    """
    env = os.environ if environ is None else environ
    storage = storage or S3Storage()
    key = storage.access_key_id or env.get("AWS_ACCESS_KEY_ID")
    secret = (
        storage.secret_access_key.get_secret_value()
        if storage.secret_access_key is not None
        else env.get("AWS_SECRET_ACCESS_KEY")
    )
    token = (
        storage.session_token.get_secret_value() if storage.session_token is not None else env.get("AWS_SESSION_TOKEN")
    )
    if (key is None) != (secret is None):
        raise DataError(
            f"{what}: incomplete S3 credentials: set both storage.s3.access_key_id and "
            "storage.s3.secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)."
        )
    if key is None and not storage.credential_chain:
        raise DataError(
            f"{what}: no S3 credentials: set storage.s3.access_key_id and storage.s3.secret_access_key, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or storage.s3.credential_chain: true to use "
            "the machine's default credential chain."
        )
    region = storage.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or _DEFAULT_REGION
    endpoint = storage.endpoint_url or env.get("AWS_ENDPOINT_URL")
    options: dict[str, object] = {"region": region, "connect_timeout": storage.connect_timeout}
    client = {"AWS_REGION": region, "connect_timeout": f"{storage.connect_timeout}s"}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
        client.update(
            AWS_ENDPOINT_URL=f"{parts.scheme or 'https'}://{parts.netloc}",
            AWS_ALLOW_HTTP=str(parts.scheme == "http").lower(),
        )
    if key is not None:
        options.update(access_key=key, secret_key=secret, session_token=token)
        client.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=str(secret))
        if token:
            client["AWS_SESSION_TOKEN"] = token
    return ObjectStore(
        pafs.S3FileSystem(**options),
        "s3",
        secrets=tuple(s for s in (secret, token) if s),
        access_key_id=key,
        client_options=tuple(client.items()),
    )


def gcs_options(storage: GcsStorage | None, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The pyarrow ``GcsFileSystem`` options ``storage`` (and ``STORAGE_EMULATOR_HOST``) map to."""
    env = os.environ if environ is None else environ
    storage = storage or GcsStorage()
    options: dict[str, object] = {"retry_time_limit": timedelta(seconds=storage.retry_seconds)}
    if storage.project_id:
        options["project_id"] = storage.project_id
    endpoint = storage.endpoint_url or env.get("STORAGE_EMULATOR_HOST")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
    if storage.anonymous:
        options["anonymous"] = True
    elif storage.access_token is not None:
        options.update(
            access_token=storage.access_token.get_secret_value(),
            credential_token_expiration=datetime.now(UTC) + timedelta(seconds=storage.token_lifetime_seconds),
        )
    return options


def open_gcs(storage: GcsStorage | None, what: str, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """Open Google Cloud Storage with ``storage`` (anonymous, a token, or Google's default credentials).

    Raises:
        DataError: pyarrow cannot build the filesystem (naming ``what``).
    """
    options = gcs_options(storage, environ)
    token = options.get("access_token")
    secrets = (str(token),) if token else ()
    try:
        filesystem = pafs.GcsFileSystem(**options)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{what}: cannot open Google Cloud Storage: {_scrub(str(exc), secrets)}") from None
    return ObjectStore(filesystem, "gs", secrets=secrets)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "bucket/some/prefix")`` (pyarrow's path form)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise DataError(f"{url!r} is not an s3://bucket/path or gs://bucket/path URL.")
    return parts.netloc, (parts.netloc + parts.path).rstrip("/")


def list_files(
    store: ObjectStore, url: str, *, suffix: str, what: str, partition_column: str | None, dates: DateRange | None
) -> list[str]:
    """The files under ``url`` (a file or a prefix), as URLs, date partitions pruned (see :func:`list_infos`)."""
    infos = list_infos(store, url, suffix=suffix, what=what, partition_column=partition_column, dates=dates)
    return [store.url(info.path) for info in infos]


def list_infos(
    store: ObjectStore, url: str, *, suffix: str, what: str, partition_column: str | None, dates: DateRange | None
) -> list[pafs.FileInfo]:
    """The files under ``url`` (a file or a prefix) with their sizes and times, date partitions pruned.

    Raises:
        DataError: the bucket does not exist, access is denied, or the path matches no file;
            the message names ``what`` and never holds a secret.
    """
    bucket, path = split_url(url)
    if any(c in url for c in "*?["):
        raise DataError(f"{what}: globs are not supported in object-store paths ({url!r}); name a prefix.")
    try:
        info = store.filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [info]
        if info.type == pafs.FileType.NotFound:  # the bucket is asked about only then
            if store.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise DataError(f"{what}: bucket {bucket!r} does not exist ({url}).")
            raise DataError(f"{what}: {url} does not exist.")
        if store.scheme == "s3" and partition_column and dates is not None and not dates.is_unbounded:
            files = _walk(store.filesystem, path, suffix, partition_column, dates)
        else:  # nothing can be pruned (S3), or no directory levels to walk (GCS): one recursive listing
            files = _listed(store.filesystem, path, suffix, partition_column, dates)
    except OSError as exc:
        raise DataError(f"{what}: cannot list {url}: {_cause(store.scrub(str(exc)))}") from None
    if not files and not (dates is not None and partition_column):
        raise DataError(f"{what}: {url} holds no {suffix} files.")
    return sorted(files, key=lambda f: f.path)


def _walk(fs: pafs.FileSystem, path: str, suffix: str, column: str, dates: DateRange) -> list[pafs.FileInfo]:
    """The files under ``path``, listed one directory level at a time, pruned date partitions unlisted.

    The directories of a level are listed concurrently: each listing is one round trip. A
    directory whose subdirectories are all date partitions, none of them pruned, is listed again
    in one recursive listing (1 request per 1,000 names, not 1 per partition): nothing under it
    is pruned, so nothing pruned is listed.
    """
    files: list[pafs.FileInfo] = []
    level = [path]
    with ThreadPoolExecutor(max_workers=_LISTING_THREADS) as pool:
        while level:
            below: list[str] = []
            whole: list[str] = []  # listed recursively at once
            listings = pool.map(lambda d: (d, fs.get_file_info(pafs.FileSelector(d, recursive=False))), level)
            for directory, entries in listings:
                found, kept, every_dir_kept = [], [], True
                for entry in entries:
                    name = entry.base_name
                    if name.startswith((".", "_")):
                        continue
                    if entry.type == pafs.FileType.Directory:
                        if not name.startswith(f"{column}="):
                            every_dir_kept = False
                        elif not dates.contains(partition_date(unquote(name), column, entry.path)):
                            every_dir_kept = False
                            continue  # pruned: never listed
                        kept.append(entry.path)
                    elif entry.type == pafs.FileType.File and (name.endswith(suffix) or "." not in name):
                        found.append(entry)
                if kept and every_dir_kept and len(kept) > 1:
                    whole.append(directory)
                else:
                    files += found
                    below += kept
            for listed in pool.map(lambda d: _listed(fs, d, suffix, column, dates), whole):
                files += listed
            level = below
    return files


def _listed(
    fs: pafs.FileSystem, path: str, suffix: str, column: str | None, dates: DateRange | None
) -> list[pafs.FileInfo]:
    """The files under ``path`` from one recursive listing, partitions outside ``dates`` dropped unopened."""
    files = []
    for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        parts = entry.path.removeprefix(path + "/").split("/")
        name = parts[-1]
        if entry.type != pafs.FileType.File or any(p.startswith((".", "_")) for p in parts):
            continue
        if not (name.endswith(suffix) or "." not in name):
            continue
        if column and dates is not None:
            days = [partition_date(unquote(p), column, entry.path) for p in parts[:-1] if p.startswith(f"{column}=")]
            if any(not dates.contains(day) for day in days):
                continue  # pruned: never opened
        files.append(entry)
    return files


def _cause(message: str) -> str:
    for code, cause in (
        ("AccessDenied", "access denied (the credentials lack permission)"),
        ("ACCESS_DENIED", "access denied (the credentials lack permission)"),
        ("InvalidAccessKeyId", "access denied (the access key id is not known to the store)"),
        ("SignatureDoesNotMatch", "access denied (the secret key is wrong)"),
        ("NoSuchBucket", "the bucket does not exist"),
        ("PERMISSION_DENIED", "access denied (the credentials lack permission)"),
        ("UNAUTHENTICATED", "access denied (no valid credentials)"),
    ):
        if code in message:
            return f"{cause}: {message}"
    return message


def store_dataset(
    store: ObjectStore, files: list[str], *, root: str | None, sizes: Mapping[str, int | None] | None = None
) -> ds.Dataset:
    """A Parquet dataset over ``files`` (URLs in ``store``); hive partitions under ``root`` are columns.

    With ``sizes`` (the listing's, by URL), each file is opened without asking its size first.
    Reads are coalesced for an object store (:data:`READ_COALESCING`).
    """
    paths = [split_url(f)[1] for f in files]
    if root is None:
        dataset = ds.dataset(paths, filesystem=store.filesystem, format="parquet")
    else:
        base = split_url(root)[1]
        dataset = ds.dataset(
            paths, filesystem=store.filesystem, format="parquet", partitioning="hive", partition_base_dir=base
        )
    known = {split_url(url)[1]: size for url, size in (sizes or {}).items()}
    parquet = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True, cache_options=READ_COALESCING)
    )
    fragments = [
        parquet.make_fragment(
            f.path, store.filesystem, partition_expression=f.partition_expression, file_size=known.get(f.path)
        )
        for f in dataset.get_fragments()
    ]
    return ds.FileSystemDataset(fragments, dataset.schema, parquet, store.filesystem)


def source_files(store: ObjectStore, source: FileSource, dates: DateRange, what: str) -> list[pafs.FileInfo]:
    """The Parquet files of ``source`` (an object-store path, listed once), date partitions outside ``dates`` pruned."""
    if isinstance(source.file_format, CsvFormat):
        raise DataError(f"{what}: CSV sources in object stores are not supported; use Parquet.")
    return list_infos(
        store, source.path, suffix=".parquet", what=what, partition_column=source.date_partition_column, dates=dates
    )


def read_rows(storage: StorageSection | None, files: list[str]) -> pa.Table:
    """Entity rows in ``files`` (object-store Parquet), read into memory; errors name the source."""
    what = f"The entity source ({files[0]})"
    store = open_store(files[0], storage, what)
    try:
        return store_dataset(store, files, root=None).to_table()
    except OSError as exc:
        raise DataError(f"{what}: cannot read: {store.scrub(str(exc))}") from None


def write_parquet(storage: StorageSection | None, url: str, reader: pa.RecordBatchReader, *, what: str) -> int:
    """Stream ``reader`` into one Parquet object at ``url``; return its rows.

    The object is written under a temporary name and moved to ``url`` once complete, so a
    failure part-way leaves no partial object at ``url`` (and the temporary one is deleted).

    Raises:
        DataError: the bucket does not exist, access is denied, or the write fails (naming
            ``what`` and ``url``, never a secret).
    """
    store = open_store(url, storage, what)
    bucket, path = split_url(url)
    if path == bucket:
        raise DataError(f"{what}: {url} names a bucket; name an object (s3://bucket/training.parquet).")
    partial = f"{path}.provender-{uuid.uuid4().hex[:12]}.partial"
    rows = 0
    try:
        if store.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise DataError(f"{what}: bucket {bucket!r} does not exist ({url}).")
        with store.filesystem.open_output_stream(partial) as stream, pq.ParquetWriter(stream, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        store.filesystem.copy_file(partial, path)  # a server-side copy: the object appears whole
        store.filesystem.delete_file(partial)
    except OSError as exc:
        _remove_quietly(store.filesystem, partial)
        raise DataError(f"{what}: cannot write {url}: {_cause(store.scrub(str(exc)))}") from None
    except BaseException:
        _remove_quietly(store.filesystem, partial)
        raise
    return rows


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    except OSError:
        pass  # nothing there, or the store refuses: nothing more to do
