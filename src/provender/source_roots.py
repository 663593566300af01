"""Which paths definitions and requests may read and write: ``sources.allowed_roots``.

Off by default (``allowed_roots`` unset): in the embedded default the registry's writers are the
machine's own users, and a source may name any path the process can read. A shared deployment
lists the folders and URL prefixes that sources, entity-row files and outputs may use::

    sources:
      allowed_roots: [data, /mnt/features, "s3://lake/features/", "https://files.example.com/pub/"]

* A **local path** (relative ones are relative to the project folder, like the roots; ``file://``
  URLs and ``~`` too) is allowed when its real path, with symlinks and ``..`` resolved, is a
  root or lies under one (roots are resolved the same way). When a source is read, the files
  it leads to are checked as well: every symlink under a source folder, and every file or
  folder a glob matches, must resolve under a root; so neither ``..`` in a glob nor a symlink
  planted inside an allowed folder reaches outside.
* A **URL** (``s3://``, ``gs://``, ``http(s)://`` ...) is allowed when its scheme and host equal
  a root's (case-insensitively) and its path is the root's path or lies under it (whole
  segments: ``s3://lake/features`` does not allow ``s3://lake/features-old``). A root with a
  scheme alone (``s3://``) allows every bucket of that scheme. A URL path with a ``.`` or ``..``
  segment (also percent-encoded) is refused.

Checked when definitions are applied (by the client and by the core service, each with its own
settings: the core's are authoritative for what its registry accepts), and on every path that
opens a source or writes a file, with the settings of the process doing it: historical
retrieval (each table's batch source, the entity-row files), ``to_parquet`` outputs, offline-to-
online ingestion, statistics, and a stream job's offline log. So an ingestion host refuses a
source that a registry written elsewhere names. The error, :class:`SourcePathNotAllowedError`,
names the path, what uses it and the setting.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from provender.config import Settings
from provender.errors import SourcePathNotAllowedError

_GLOB_CHARS = "*?["


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


@dataclass(frozen=True, slots=True)
class _UrlRoot:
    scheme: str
    host: str  # "" allows every host of the scheme
    path: str  # without a trailing "/"; "" is the whole host


@dataclass(frozen=True, slots=True)
class SourceRoots:
    """The allow-list of one process's settings (``sources.allowed_roots``); see the module docstring.

    Attributes:
        roots: the roots as configured (None: the check is off).
        base_dir: what relative paths are relative to.
    """

    roots: tuple[str, ...] | None
    base_dir: Path
    _local: tuple[str, ...] = ()
    _urls: tuple[_UrlRoot, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> SourceRoots:
        """Return the allow-list of ``settings``."""
        return cls.build(settings.sources.allowed_roots, base_dir=settings.base_dir)

    @classmethod
    def build(cls, roots: Sequence[str] | None, *, base_dir: Path) -> SourceRoots:
        """Return the allow-list of ``roots`` (None: off), relative ones under ``base_dir``."""
        if roots is None:
            return cls(None, base_dir)
        local, urls = [], []
        for root in roots:
            if _is_url(root):
                parts = urlsplit(root)
                urls.append(_UrlRoot(parts.scheme.lower(), parts.netloc.lower(), unquote(parts.path).rstrip("/")))
            else:
                local.append(_real(root, base_dir))
        return cls(tuple(roots), base_dir, tuple(local), tuple(urls))

    @property
    def is_enabled(self) -> bool:
        """Whether paths are checked at all."""
        return self.roots is not None

    def check(self, path: str | Path, *, what: str, walk: bool = False, relative_to: Path | None = None) -> None:
        """Check one path a source, a request or an output uses.

        Args:
            path: a local path, a ``file://`` URL or another URL.
            what: what uses it, for the message (``"batch source of feature table 'trips'"``).
            walk: also check what the path leads to on disk (symlinks under a folder, a glob's
                matches): for a path about to be read.
            relative_to: what a relative path is relative to, as its opener reads it (default
                ``base_dir``, as for sources; the working directory for entity-row files and outputs).

        Raises:
            SourcePathNotAllowedError: the path, or a file it leads to, is outside every root.
        """
        if self.roots is None:
            return
        text = str(path)
        if _is_url(text):
            self._check_url(text, what=what)
            return
        raw = text.removeprefix("file://")
        wildcard = min((raw.index(char) for char in _GLOB_CHARS if char in raw), default=-1)
        fixed = raw if wildcard < 0 else os.path.dirname(raw[:wildcard]) or "."
        if wildcard >= 0 and ".." in Path(raw[wildcard:]).parts:
            raise self._refused(text, what=what, resolved=None, reason="a glob may not hold '..' after a wildcard")
        base = self.base_dir if relative_to is None else relative_to
        self._check_local(text, _real(fixed, base), what=what)
        if walk:
            self._walk(text, raw, wildcard >= 0, base, what=what)

    def check_source(self, source: object, *, what: str, walk: bool = False) -> None:
        """Check a source's ``path``, if it has one (file and Delta sources; a Kafka source has none).

        A SQL source reads its inputs: each of them is checked instead (its ``path`` is only a name).
        """
        inputs = getattr(source, "sources", None)
        if isinstance(inputs, Mapping):
            for name, input_source in inputs.items():
                self.check_source(input_source, what=f"{what}, input {name!r}", walk=walk)
            return
        path = getattr(source, "path", None)
        if self.roots is not None and isinstance(path, str):
            self.check(path, what=what, walk=walk)

    def check_definitions(self, definitions: Iterable[object]) -> None:
        """Check the batch source of every feature table among ``definitions`` (before an apply)."""
        if self.roots is None:
            return
        for definition in definitions:
            source = getattr(definition, "batch_source", None)
            if source is not None:
                self.check_source(source, what=f"batch source of feature table {getattr(definition, 'name', '?')!r}")

    # -- local paths

    def _check_local(self, shown: str, real: str, *, what: str) -> None:
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self._local):
            raise self._refused(shown, what=what, resolved=real)

    def _walk(self, shown: str, raw: str, is_glob: bool, base: Path, *, what: str) -> None:
        path = os.path.join(base, os.path.expanduser(raw))
        starts = sorted(glob.glob(path, recursive=True)) if is_glob else [path]
        seen: set[str] = set()
        for start in starts:
            self._check_local(shown, os.path.realpath(start), what=f"{what}, file {start}")
            if not os.path.isdir(start):
                continue
            # Symlinked folders are followed (readers follow them), each real folder once; every
            # symlink is checked before anything under it is visited.
            for folder, dirs, files in os.walk(start, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:
                    dirs[:] = []
                    continue
                seen.add(real)
                for name in (*dirs, *files):
                    entry = os.path.join(folder, name)
                    if os.path.islink(entry):
                        self._check_local(shown, os.path.realpath(entry), what=f"{what}, symlink {entry}")

    # -- URLs

    def _check_url(self, url: str, *, what: str) -> None:
        parts = urlsplit(url)
        path = unquote(parts.path)
        if any(segment in (".", "..") for segment in path.split("/")):
            raise self._refused(url, what=what, resolved=None, reason="a URL path may not hold '.' or '..' segments")
        scheme, host = parts.scheme.lower(), parts.netloc.lower()
        for root in self._urls:
            if root.scheme != scheme or (root.host and root.host != host):
                continue
            if not root.path or path == root.path or path.startswith(root.path + "/"):
                return
        raise self._refused(url, what=what, resolved=None)

    def _refused(
        self, path: str, *, what: str, resolved: str | None, reason: str | None = None
    ) -> SourcePathNotAllowedError:
        return SourcePathNotAllowedError(
            path, what=what, roots=self.roots or (), resolved=None if resolved == path else resolved, reason=reason
        )


def _real(path: str, base_dir: Path) -> str:
    """The real path of a local path (``~`` expanded, relative to ``base_dir``, symlinks and ``..`` resolved)."""
    expanded = os.path.expanduser(path.removeprefix("file://"))
    return os.path.realpath(os.path.join(base_dir, expanded))
