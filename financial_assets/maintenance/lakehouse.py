"""Refs and snapshot expiry on every table of the lakehouse, with PyIceberg only (no JVM).

Retention keeps readable everything a reader could have been looking at within the window
``[older_than, now]``:

- every snapshot a ``star_schema_publications`` row names, if that row was current at some
  moment of the window (so ``financial-assets query --as-of`` any time in it works);
- every snapshot ``main`` pointed at during the window (its ``snapshot-log``), for engines that
  read ``main`` (Athena, Spark), on raw and analytics tables alike;
- the head of every branch and tag: ``main``, a build's ``audit_<version>`` branch, and the
  ``published_<version>`` tags of the rollback window (:func:`tidy_refs` keeps those in step
  with the publications).

Every other snapshot older than ``older_than`` is expired, in a commit that requires every
branch and tag to be where it was read. PyIceberg 0.12's ``expire_snapshots()`` only removes
snapshots from the table's metadata (and unconditionally); it deletes no file.
:func:`expire_snapshots` therefore deletes, after the commit, exactly the files that were
reachable before it and are not reachable from the metadata as committed (manifest lists,
manifests, data and delete files, statistics files): Iceberg's own reachability rule, computed
on the catalog's metadata after the commit, so a commit that raced with ours keeps its files.
It assumes, as Iceberg does, that no file is shared between two tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.lakehouse.publication import DEFAULT_KEEP, Publication, kept_versions, publications
from financial_assets.lakehouse.tables import STAR_TABLES, audit_branch, publication_tag

DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_BRANCH_GRACE = timedelta(hours=24)
TAG_PREFIX = publication_tag("")  # published_
BRANCH_PREFIX = audit_branch("")  # audit_

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def _millis(when: datetime) -> int:
    aware = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return int(aware.timestamp() * 1000)


# -- refs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefChanges:
    """What :func:`tidy_refs` changed, as ``table@ref`` strings."""

    tags_dropped: list[str] = field(default_factory=list)
    tags_set: list[str] = field(default_factory=list)
    branches_dropped: list[str] = field(default_factory=list)


def tidy_refs(
    catalog: LakehouseCatalog,
    keep: int = DEFAULT_KEEP,
    branch_grace: timedelta = DEFAULT_BRANCH_GRACE,
    now: datetime | None = None,
    log: Log = _quiet,
) -> RefChanges:
    """Keep the star tables' refs in step with the publications.

    - ``published_<version>`` tags: dropped for versions outside the rollback window
      (`publication.kept_versions(keep)`); for versions inside it, pointed at the snapshots of the
      version's latest publication (a compaction re-publishes ``fact_transactions``; a tag a crash
      left unset is set), when those snapshots still exist.
    - ``audit_<version>`` branches: dropped when they are not the newest build's and their newest
      snapshot is older than ``branch_grace`` (a killed or abandoned build's leftovers).
    """
    from pyiceberg.table.refs import SnapshotRefType

    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the published version), got {keep}")
    now = now or datetime.now(timezone.utc)
    iceberg = catalog.load()
    kept = kept_versions(catalog, keep)
    latest_of: dict[str, Publication] = {p.version: p for p in publications(catalog)}  # oldest first: the last wins
    tables = {
        name: iceberg.load_table(catalog.analytics_table(name))
        for name in STAR_TABLES
        if iceberg.table_exists(catalog.analytics_table(name))
    }

    # A build's age is its newest snapshot's on any of the star tables.
    newest_write: dict[str, int] = {}
    for table in tables.values():
        for name, ref in table.refs().items():
            if ref.snapshot_ref_type == SnapshotRefType.BRANCH and name.startswith(BRANCH_PREFIX):
                snapshot = table.snapshot_by_id(ref.snapshot_id)
                written = snapshot.timestamp_ms if snapshot else 0
                newest_write[name] = max(newest_write.get(name, 0), written)
    newest_build = max(newest_write, key=newest_write.get) if newest_write else None
    grace_ends = _millis(now - branch_grace)
    stale_branches = {b for b, written in newest_write.items() if b != newest_build and written < grace_ends}

    changes = RefChanges()
    for table_name, table in tables.items():
        refs = table.refs()
        drop_tags = [
            name for name, ref in refs.items()
            if ref.snapshot_ref_type == SnapshotRefType.TAG and name.startswith(TAG_PREFIX)
            and name[len(TAG_PREFIX):] not in kept
        ]
        set_tags = {}
        for version in kept:
            wanted = latest_of[version].snapshots.get(table_name) if version in latest_of else None
            tag = publication_tag(version)
            if wanted is None or table.snapshot_by_id(wanted) is None:
                continue
            if tag not in refs or refs[tag].snapshot_id != wanted:
                set_tags[tag] = wanted
        drop_branches = sorted(b for b in refs if b in stale_branches)
        if not (drop_tags or set_tags or drop_branches):
            continue
        with table.manage_snapshots() as manage:
            for tag in drop_tags:
                manage.remove_tag(tag)
            for tag, snapshot_id in set_tags.items():
                manage.create_tag(snapshot_id=snapshot_id, tag_name=tag)  # creates or moves it
            for branch in drop_branches:
                manage.remove_branch(branch)
        where = catalog.analytics_table(table_name)
        changes.tags_dropped.extend(f"{where}@{t}" for t in drop_tags)
        changes.tags_set.extend(f"{where}@{t}" for t in set_tags)
        changes.branches_dropped.extend(f"{where}@{b}" for b in drop_branches)
        log(
            f"{where}: dropped tags {drop_tags or '-'}, set tags {sorted(set_tags) or '-'}, "
            f"dropped stale branches {drop_branches or '-'}"
        )
    return changes


# -- snapshot expiry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableExpiry:
    """One table's expiry: snapshots removed from its metadata, files deleted (of which data files)."""

    table: str
    snapshots_expired: int
    files_deleted: int
    data_files_deleted: int


def publications_current_since(history: list[Publication], since: datetime) -> list[Publication]:
    """The publications readers saw at some moment from ``since`` until now: the one current at
    ``since`` and every later one (``history`` oldest first)."""
    before = [p for p in history if p.published_at <= since]
    return before[-1:] + [p for p in history if p.published_at > since]


def _main_since(metadata, since_ms: int) -> set[int]:
    """Snapshots ``main`` pointed at from ``since_ms`` until now, from the table's snapshot log."""
    log = sorted(metadata.snapshot_log, key=lambda entry: entry.timestamp_ms)
    before = [entry.snapshot_id for entry in log if entry.timestamp_ms <= since_ms]
    return set(before[-1:]) | {entry.snapshot_id for entry in log if entry.timestamp_ms > since_ms}


def reachable_files(io, metadata, cache: dict | None = None) -> dict[str, str]:
    """Every file the table's snapshots need, as path -> kind (``manifest-list``, ``manifest``,
    ``data``, ``statistics``). ``cache`` (manifest list or manifest path -> contents) may be
    shared between calls on one table: those files are immutable."""
    cache = {} if cache is None else cache
    files: dict[str, str] = {}
    for snapshot in metadata.snapshots:
        files[snapshot.manifest_list] = "manifest-list"
        if snapshot.manifest_list not in cache:
            cache[snapshot.manifest_list] = snapshot.manifests(io)
        for manifest in cache[snapshot.manifest_list]:
            files[manifest.manifest_path] = "manifest"
            if manifest.manifest_path not in cache:
                entries = manifest.fetch_manifest_entry(io, discard_deleted=True)  # live entries only
                cache[manifest.manifest_path] = [entry.data_file.file_path for entry in entries]
            files.update((path, "data") for path in cache[manifest.manifest_path])
    for statistics in [*metadata.statistics, *metadata.partition_statistics]:
        files[statistics.statistics_path] = "statistics"
    return files


def commit_expiry(iceberg, table, expired: list[int]) -> None:
    """Remove ``expired`` from the table's metadata, on condition that no branch or tag moved since
    it was read. (PyIceberg's ``expire_snapshots()`` commits with no condition, and removing a
    snapshot also removes any ref pointing at it: a rollback moving ``main`` onto an expiring
    snapshot meanwhile would lose ``main``. This commit fails instead, and the next run retries.)"""
    from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID, RemoveSnapshotsUpdate

    metadata = table.metadata
    requirements = (
        AssertTableUUID(uuid=metadata.table_uuid),
        *(AssertRefSnapshotId(ref=name, snapshot_id=ref.snapshot_id) for name, ref in sorted(metadata.refs.items())),
    )
    iceberg.commit_table(table, requirements, (RemoveSnapshotsUpdate(snapshot_ids=expired),))


def expire_table_snapshots(
    catalog: LakehouseCatalog, identifier: str, older_than: datetime, also_protected: set[int] = frozenset(),
    log: Log = _quiet,
) -> TableExpiry:
    """Expire one table's snapshots older than ``older_than`` that nothing protects (see the
    module's docstring), then delete the files only they needed."""
    iceberg = catalog.load()
    table = iceberg.load_table(identifier)
    metadata = table.metadata
    since_ms = _millis(older_than)
    protected = {ref.snapshot_id for ref in metadata.refs.values()} | _main_since(metadata, since_ms) | set(also_protected)
    expired = sorted(
        s.snapshot_id for s in metadata.snapshots if s.timestamp_ms < since_ms and s.snapshot_id not in protected
    )
    if not expired:
        log(f"{identifier}: no snapshot to expire ({len(metadata.snapshots)} kept)")
        return TableExpiry(identifier, 0, 0, 0)

    cache: dict = {}
    before = reachable_files(table.io, metadata, cache)  # read before the commit: fails before any change
    commit_expiry(iceberg, table, expired)
    committed = iceberg.load_table(identifier)
    after = reachable_files(committed.io, committed.metadata, cache)
    unreachable = sorted(set(before) - set(after))
    deleted = data_deleted = 0
    for path in unreachable:
        try:
            committed.io.delete(path)
        except FileNotFoundError:
            continue
        deleted += 1
        data_deleted += before[path] == "data"
    log(
        f"{identifier}: expired {len(expired)} of {len(metadata.snapshots)} snapshots, "
        f"deleted {deleted} files ({data_deleted} data files)"
    )
    return TableExpiry(identifier, len(expired), deleted, data_deleted)


def lakehouse_tables(catalog: LakehouseCatalog) -> list[str]:
    """Every table of the lakehouse: the raw zone's and the analytics zone's."""
    iceberg = catalog.load()
    identifiers = []
    for namespace in (catalog.raw_namespace, catalog.analytics_namespace):
        if iceberg.namespace_exists(namespace):
            identifiers.extend(".".join(identifier) for identifier in iceberg.list_tables(namespace))
    return sorted(identifiers)


def expire_snapshots(catalog: LakehouseCatalog, older_than: datetime, log: Log = _quiet) -> list[TableExpiry]:
    """Expire snapshots older than ``older_than`` on every table of the lakehouse, keeping what
    readers could see from then until now, and delete the files nothing needs any more."""
    window = publications_current_since(publications(catalog), older_than)
    published_snapshots = {snapshot_id for p in window for snapshot_id in p.snapshots.values()}
    log(
        f"expiring snapshots older than {older_than.isoformat()}; publications kept readable: "
        f"{', '.join(f'{p.version} ({p.kind} {p.published_at:%Y-%m-%d %H:%M})' for p in window) or 'none'}"
    )
    return [
        expire_table_snapshots(catalog, identifier, older_than, published_snapshots, log)
        for identifier in lakehouse_tables(catalog)
    ]
