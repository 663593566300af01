"""``sources.allowed_roots``: local paths (relative, absolute, ``..``, ``~``, symlinks, globs) and URLs.

The allow-list is checked on real files and symlinks under ``tmp_path``; each class of escape is
tried in several shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import provender as pv
from provender.config import load_settings
from provender.errors import DataError, SourcePathNotAllowedError
from provender.source_roots import SourceRoots
from provender.wire.errors import error_body, rebuild_error


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``project/`` with ``data/`` (allowed) holding files, and ``secret/`` beside it (not allowed)."""
    project = tmp_path / "project"
    (project / "data" / "date=2026-01-01").mkdir(parents=True)
    (project / "data" / "date=2026-01-01" / "a.parquet").write_bytes(b"x")
    (project / "data" / "b.parquet").write_bytes(b"x")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.parquet").write_bytes(b"x")
    return project


def roots(tree: Path, *allowed: str) -> SourceRoots:
    return SourceRoots.build(allowed, base_dir=tree)


def test_off_by_default_allows_anything(tree: Path) -> None:
    settings = load_settings(environ={}, overrides={"base_dir": tree})
    off = SourceRoots.of(settings)
    assert not off.is_enabled
    for path in ("/etc/passwd", "../../..", "http://169.254.169.254/latest", "s3://any/thing"):
        off.check(path, what="x", walk=True)


@pytest.mark.parametrize(
    "path",
    [
        "data",
        "data/",
        "data/b.parquet",
        "./data/date=2026-01-01/a.parquet",
        "data/../data/b.parquet",
        "data/*.parquet",
        "data/**/*.parquet",
        "data/date=*/a.parquet",
        "file://{tree}/data/b.parquet",
        "{tree}/data",
        "data/not-yet-written.parquet",
    ],
)
def test_paths_under_a_root_are_allowed(tree: Path, path: str) -> None:
    roots(tree, "data").check(path.format(tree=tree), what="source", walk=True)


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../secret",
        "../secret/s.parquet",
        "data/../../secret/s.parquet",
        "data/../../secret",
        "{tree}/../secret/s.parquet",
        "file://{tree}/../secret",
        "/etc/passwd",
        "/",
        "~",
        "datax/b.parquet",  # a sibling whose name starts like the root
        "../secret/*.parquet",
        "data/*/../../../secret/s.parquet",  # '..' after a wildcard
        "data/**/../../../secret/*",
    ],
)
def test_paths_outside_every_root_are_refused_naming_path_and_setting(tree: Path, path: str) -> None:
    (tree / "datax").mkdir(exist_ok=True)
    shown = path.format(tree=tree)
    with pytest.raises(SourcePathNotAllowedError) as info:
        roots(tree, "data").check(shown, what="batch source of feature table 'trips'")
    message = str(info.value)
    assert repr(shown) in message and "sources.allowed_roots" in message and "feature table 'trips'" in message
    assert isinstance(info.value, DataError)


def test_a_symlinked_file_or_folder_inside_a_root_pointing_outside_is_refused_when_read(tree: Path) -> None:
    allowed = roots(tree, "data")
    (tree / "data" / "evil.parquet").symlink_to(tree.parent / "secret" / "s.parquet")
    allowed.check("data", what="source")  # the folder itself is inside (apply time)
    with pytest.raises(SourcePathNotAllowedError, match=r"symlink .*evil\.parquet"):
        allowed.check("data", what="source", walk=True)  # what it leads to is not (read time)
    with pytest.raises(SourcePathNotAllowedError, match="resolves to"):
        allowed.check("data/evil.parquet", what="source")
    with pytest.raises(SourcePathNotAllowedError):
        allowed.check("data/*.parquet", what="source", walk=True)
    (tree / "data" / "evil.parquet").unlink()
    (tree / "data" / "date=2026-01-02").symlink_to(tree.parent / "secret", target_is_directory=True)
    with pytest.raises(SourcePathNotAllowedError, match="date=2026-01-02"):
        allowed.check("data", what="source", walk=True)
    with pytest.raises(SourcePathNotAllowedError):
        allowed.check("data/date=*/*.parquet", what="source", walk=True)


def test_symlinks_are_followed_through_other_allowed_roots_and_loops(tree: Path) -> None:
    other = tree / "other"
    other.mkdir()
    (tree / "data" / "alias").symlink_to(other, target_is_directory=True)  # inside a second root
    (tree / "data" / "loop").symlink_to(tree / "data", target_is_directory=True)  # a cycle
    allowed = roots(tree, "data", "other")
    allowed.check("data", what="source", walk=True)
    (other / "evil.parquet").symlink_to(tree.parent / "secret" / "s.parquet")  # reached through alias
    with pytest.raises(SourcePathNotAllowedError, match=r"evil\.parquet"):
        allowed.check("data", what="source", walk=True)


def test_a_symlink_to_a_folder_inside_a_root_is_allowed(tree: Path) -> None:
    (tree / "data" / "alias").symlink_to(tree / "data" / "date=2026-01-01", target_is_directory=True)
    roots(tree, "data").check("data", what="source", walk=True)
    roots(tree, "data").check("data/alias/a.parquet", what="source", walk=True)


def test_a_symlinked_root_is_resolved_too(tree: Path) -> None:
    (tree / "link").symlink_to(tree / "data", target_is_directory=True)
    allowed = roots(tree, "link")
    allowed.check("data/b.parquet", what="source")  # the same real folder
    allowed.check("link/b.parquet", what="source")
    with pytest.raises(SourcePathNotAllowedError):
        allowed.check("../secret", what="source")


def test_home_relative_paths_are_expanded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    roots(tree, "~/data").check("data/b.parquet", what="source")
    with pytest.raises(SourcePathNotAllowedError):
        roots(tree, "data").check("~/../secret", what="source")


URL_ROOTS = ("s3://lake/features/", "https://files.example.com/pub", "gs://")


@pytest.mark.parametrize(
    "url",
    [
        "s3://lake/features/trips.parquet",
        "s3://lake/features/date=2026-01-01/*.parquet",
        "S3://LAKE/features/x.parquet",  # scheme and host compare case-insensitively
        "s3://lake/features",
        "https://files.example.com/pub/x.csv",
        "gs://any-bucket/anything.parquet",
    ],
)
def test_urls_under_a_root_are_allowed(tree: Path, url: str) -> None:
    roots(tree, *URL_ROOTS).check(url, what="source")


@pytest.mark.parametrize(
    "url",
    [
        "s3://lake/features-old/x.parquet",  # not on a segment boundary
        "s3://lake/other/x.parquet",
        "s3://lake2/features/x.parquet",
        "s3://lake/Features/x.parquet",  # paths compare exactly
        "s3://lake/features/../secrets/x.parquet",
        "s3://lake/features/%2e%2e/secrets/x.parquet",
        "s3://lake/features/./x.parquet",
        "http://files.example.com/pub/x.csv",  # another scheme
        "https://files.example.com.evil.org/pub/x.csv",
        "https://files.example.com/public/x.csv",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:6379/",
        "az://lake/features/x.parquet",
    ],
)
def test_urls_outside_every_root_are_refused(tree: Path, url: str) -> None:
    with pytest.raises(SourcePathNotAllowedError, match=r"sources\.allowed_roots|'\.\.'|'\.'"):
        roots(tree, *URL_ROOTS).check(url, what="source")


def test_local_roots_do_not_allow_urls_nor_url_roots_local_paths(tree: Path) -> None:
    with pytest.raises(SourcePathNotAllowedError):
        roots(tree, "data").check("https://example.com/data/x.parquet", what="source")
    with pytest.raises(SourcePathNotAllowedError):
        roots(tree, "s3://lake/").check("data/b.parquet", what="source")
    with pytest.raises(SourcePathNotAllowedError):
        roots(tree).check("data/b.parquet", what="source")  # an empty list allows nothing


def test_definitions_are_checked_by_their_batch_source(tree: Path) -> None:
    driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)

    def table(path: str) -> pv.FeatureTable:
        return pv.FeatureTable(
            name="trips",
            entities=["driver_id"],
            features=[pv.Feature("n", pv.ValueType.INT64)],
            batch_source=pv.FileSource(path=path, event_timestamp_column="ts"),
        )

    roots(tree, "data").check_definitions([driver, table("data/b.parquet")])
    with pytest.raises(SourcePathNotAllowedError, match="batch source of feature table 'trips'"):
        roots(tree, "data").check_definitions([driver, table("../secret/s.parquet")])


def test_the_setting_reads_lists_from_the_environment(tree: Path) -> None:
    settings = load_settings(
        environ={"PROVENDER_SOURCES__ALLOWED_ROOTS": "data, s3://lake/features/"}, overrides={"base_dir": tree}
    )
    assert settings.sources.allowed_roots == ("data", "s3://lake/features/")
    SourceRoots.of(settings).check("s3://lake/features/x", what="source")


def test_the_error_travels_over_the_wire_with_its_fields(tree: Path) -> None:
    with pytest.raises(SourcePathNotAllowedError) as info:
        roots(tree, "data").check("../secret", what="entity rows")
    body = error_body(info.value, code="INVALID_ARGUMENT", message=str(info.value))["error"]
    again = rebuild_error(body["type"], code=body["code"], message=body["message"], fields=body["fields"])  # type: ignore[index]
    assert type(again) is SourcePathNotAllowedError and str(again) == str(info.value)
    assert (again.path, again.what, again.roots) == ("../secret", "entity rows", ("data",))
    assert os.path.realpath(tree.parent / "secret") in str(again)


def test_a_sql_source_is_checked_by_its_inputs(tree: Path) -> None:
    def sql(drivers: str) -> pv.SqlSource:
        return pv.SqlSource(
            query="SELECT * FROM trips JOIN drivers USING (driver_id)",
            sources={
                "trips": pv.FileSource(path="data/b.parquet", event_timestamp_column="ts"),
                "drivers": pv.FileSource(path=drivers, event_timestamp_column="ts"),
            },
            event_timestamp_column="ts",
        )

    allowed = roots(tree, "data")
    allowed.check_source(sql("data/date=2026-01-01/a.parquet"), what="batch source of feature table 'rides'", walk=True)
    with pytest.raises(SourcePathNotAllowedError, match="batch source of feature table 'rides', input 'drivers'"):
        allowed.check_source(sql("../secret/s.parquet"), what="batch source of feature table 'rides'")
