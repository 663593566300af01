"""Object-store sources (``s3://``): credentials, listing with partition pruning, clear errors.

Credentials come from ``storage.s3`` in the settings, else from the standard AWS environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``), else, only with ``credential_chain: true``, from the machine's default
chain. Secrets are held as :class:`~pydantic.SecretStr` and scrubbed from every error message.

Files are listed with pyarrow's S3 filesystem, one directory level at a time, so a pruned date
partition (``<column>=YYYY-MM-DD/``) is never listed beyond its own prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from provender.config import S3Storage
from provender.definitions import CsvFormat, FileSource
from provender.errors import DataError
from provender.offline.files import DateRange, partition_date

_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class ObjectStore:
    """An opened object store: its filesystem and the secrets to scrub from messages."""

    filesystem: pafs.FileSystem
    secrets: tuple[str, ...] = field(default=(), repr=False)
    access_key_id: str | None = None

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def open_s3(storage: S3Storage | None, what: str, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """Open S3 with ``storage`` (settings) or the environment's credentials.

    Args:
        storage: the ``storage.s3`` settings (None: environment only).
        what: the source being read, named in errors.
        environ: the environment (default: ``os.environ``).

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
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
    if key is not None:
        options.update(access_key=key, secret_key=secret, session_token=token)
    return ObjectStore(pafs.S3FileSystem(**options), secrets=tuple(s for s in (secret, token) if s), access_key_id=key)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "bucket/some/prefix")`` (pyarrow's path form)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise DataError(f"{url!r} is not an s3://bucket/path URL (only s3:// object stores are supported).")
    return parts.netloc, (parts.netloc + parts.path).rstrip("/")


def list_s3_files(
    store: ObjectStore, url: str, *, suffix: str, what: str, partition_column: str | None, dates: DateRange | None
) -> list[str]:
    """The files under ``url`` (a file or a prefix), as ``s3://`` URLs, date partitions pruned.

    Raises:
        DataError: the bucket does not exist, access is denied, or the path matches no file;
            the message names ``what`` and never holds a secret.
    """
    bucket, path = split_url(url)
    if any(c in url for c in "*?["):
        raise DataError(f"{what}: globs are not supported in object-store paths ({url!r}); name a prefix.")
    try:
        if store.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise DataError(f"{what}: bucket {bucket!r} does not exist ({url}).")
        info = store.filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [url]
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"{what}: {url} does not exist.")
        files = _walk(store.filesystem, path, suffix, partition_column, dates)
    except OSError as exc:
        raise DataError(f"{what}: cannot list {url}: {_cause(store.scrub(str(exc)))}") from None
    if not files and not (dates is not None and partition_column):
        raise DataError(f"{what}: {url} holds no {suffix} files.")
    return [f"s3://{f}" for f in sorted(files)]


def _walk(fs: pafs.FileSystem, path: str, suffix: str, column: str | None, dates: DateRange | None) -> list[str]:
    files: list[str] = []
    for entry in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        name = entry.base_name
        if name.startswith((".", "_")):
            continue
        if entry.type == pafs.FileType.Directory:
            if column and dates is not None and name.startswith(f"{column}="):
                day = partition_date(unquote(name), column, entry.path)
                if not dates.contains(day):
                    continue  # pruned: never listed
            files += _walk(fs, entry.path, suffix, column, dates)
        elif entry.type == pafs.FileType.File and (name.endswith(suffix) or "." not in name):
            files.append(entry.path)
    return files


def _cause(message: str) -> str:
    for code, cause in (
        ("AccessDenied", "access denied (the credentials lack permission)"),
        ("ACCESS_DENIED", "access denied (the credentials lack permission)"),
        ("InvalidAccessKeyId", "access denied (the access key id is not known to the store)"),
        ("SignatureDoesNotMatch", "access denied (the secret key is wrong)"),
        ("NoSuchBucket", "the bucket does not exist"),
    ):
        if code in message:
            return f"{cause}: {message}"
    return message


def s3_dataset(store: ObjectStore, files: list[str], *, root: str | None) -> ds.Dataset:
    """A Parquet dataset over ``files`` (``s3://`` URLs); hive partitions under ``root`` are columns."""
    paths = [split_url(f)[1] for f in files]
    if root is None:
        return ds.dataset(paths, filesystem=store.filesystem, format="parquet")
    return ds.dataset(
        paths, filesystem=store.filesystem, format="parquet", partitioning="hive", partition_base_dir=split_url(root)[1]
    )


def s3_source_files(store: ObjectStore, source: FileSource, dates: DateRange, what: str) -> list[str]:
    """The Parquet files of ``source`` (an ``s3://`` path), date partitions outside ``dates`` pruned."""
    if isinstance(source.file_format, CsvFormat):
        raise DataError(f"{what}: CSV sources in object stores are not supported; use Parquet.")
    return list_s3_files(
        store, source.path, suffix=".parquet", what=what, partition_column=source.date_partition_column, dates=dates
    )


def read_s3_rows(storage: S3Storage | None, files: list[str]) -> pa.Table:
    """Entity rows in ``files`` (``s3://`` Parquet), read into memory; errors name the source."""
    what = f"The entity source ({files[0]})"
    store = open_s3(storage, what)
    try:
        return s3_dataset(store, files, root=None).to_table()
    except OSError as exc:
        raise DataError(f"{what}: cannot read: {store.scrub(str(exc))}") from None
