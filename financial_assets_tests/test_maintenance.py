"""Lakehouse maintenance on real Iceberg tables: rollback tags and audit branches, snapshot
expiry that deletes files, compaction on the suite's Spark, and the Dagster job around them."""

import json
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from financial_assets.lakehouse.catalog import TABLE_PROPERTIES
from financial_assets.lakehouse.publication import latest_publication, publications, rollback
from financial_assets.lakehouse.tables import publication_tag
from financial_assets.maintenance.compaction import compact_fact_transactions, data_file_count
from financial_assets.maintenance.lakehouse import expire_snapshots, reachable_files, tidy_refs
from financial_assets.query.duckdb_views import local_path
from financial_assets_tests.conftest import temporary_lakehouse
from financial_assets_tests.star_builds import build_and_publish, cli_environment, totals, write_branches, star_rows

FIRST = {1: ["10.00", "20.00"], 2: ["5.00"]}
SECOND = {1: ["100.00"], 2: ["7.50"]}
THIRD = {1: ["1.00"], 2: ["2.00", "3.00"]}


def star_table(catalog, name):
    return catalog.load().load_table(catalog.analytics_table(name))


def refs_of(catalog, name) -> set[str]:
    return set(star_table(catalog, name).refs())


def files_of(catalog, publication, name="fact_transactions") -> list[str]:
    table = star_table(catalog, name)
    return [local_path(t.file.file_path) for t in table.scan(snapshot_id=publication.snapshots[name]).plan_files()]


@pytest.fixture
def query(tmp_path, monkeypatch, capsys):
    """`financial-assets query --as-of AS_OF` (or the plain query) on a lakehouse: (exit code,
    totals or None, stderr)."""
    from financial_assets.cli import main

    def run(catalog, as_of=None):
        for name, value in cli_environment(catalog, tmp_path / "analytics.duckdb").items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(["query", "--format", "json", *(["--as-of", as_of] if as_of else [])])
        captured = capsys.readouterr()
        rows = json.loads(captured.out) if code == 0 else None
        return code, rows and {r["name"]: Decimal(r["total_transaction_amount"]) for r in rows}, captured.err

    return run


def publish_three(catalog) -> datetime:
    """v1, then v2, then the moment ``cutoff`` (returned), then v3: v2 was current at the cutoff,
    v1 was not."""
    build_and_publish(catalog, "v1", FIRST)
    build_and_publish(catalog, "v2", SECOND)
    cutoff = datetime.now(timezone.utc)
    build_and_publish(catalog, "v3", THIRD)
    return cutoff


@pytest.fixture
def three_publications(lakehouse_catalog):
    """:func:`publish_three` in the test's lakehouse: the cutoff."""
    return publish_three(lakehouse_catalog)


# Tests that make the same changes to three publications (or one compacted) and then only read
# share a lakehouse made once per module (the module alone: 61 s -> 53 s).
def module_lakehouse(server_settings, tmp_path_factory):
    return temporary_lakehouse(server_settings, tmp_path_factory.mktemp("lakehouse"))


# -- rollback tags and audit branches -------------------------------------------------------------


@pytest.fixture(scope="module")
def tidied_keeping_two(server_settings, tmp_path_factory):
    """Three publications, then rollback tags tidied to the newest two: (catalog, changes)."""
    with module_lakehouse(server_settings, tmp_path_factory) as catalog:
        publish_three(catalog)
        yield catalog, tidy_refs(catalog, keep=2)


def test_tags_of_versions_outside_the_rollback_window_are_dropped(tidied_keeping_two):
    catalog, changes = tidied_keeping_two

    assert publication_tag("v1") not in refs_of(catalog, "fact_transactions")
    assert len(changes.tags_dropped) == 4  # v1's tag on each of the four tables


def test_tags_of_versions_in_the_rollback_window_stay(tidied_keeping_two):
    catalog, _ = tidied_keeping_two

    for table in ("dim_customers", "dim_accounts", "dim_dates", "fact_transactions"):
        assert {publication_tag("v2"), publication_tag("v3")} <= refs_of(catalog, table)


def test_a_killed_builds_audit_branch_is_dropped_after_the_grace_period(lakehouse_catalog):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    write_branches(lakehouse_catalog, "v2", star_rows(SECOND))  # killed before its audit row
    write_branches(lakehouse_catalog, "v3", star_rows(THIRD))  # the newest build, still running

    changes = tidy_refs(lakehouse_catalog, branch_grace=timedelta(hours=24), now=datetime.now(timezone.utc) + timedelta(days=2))

    assert "audit_v2" not in refs_of(lakehouse_catalog, "fact_transactions")
    assert "audit_v3" in refs_of(lakehouse_catalog, "fact_transactions")
    assert sorted(changes.branches_dropped)[0].endswith("@audit_v2") and len(changes.branches_dropped) == 4


def test_the_newest_builds_audit_branch_is_kept_however_old(lakehouse_catalog):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    write_branches(lakehouse_catalog, "v2", star_rows(SECOND))

    tidy_refs(lakehouse_catalog, now=datetime.now(timezone.utc) + timedelta(days=30))

    assert "audit_v2" in refs_of(lakehouse_catalog, "fact_transactions")


def test_an_audit_branch_younger_than_the_grace_period_is_kept(lakehouse_catalog):
    build_and_publish(lakehouse_catalog, "v1", FIRST)
    write_branches(lakehouse_catalog, "v2", star_rows(SECOND))
    write_branches(lakehouse_catalog, "v3", star_rows(THIRD))

    tidy_refs(lakehouse_catalog, branch_grace=timedelta(hours=24))

    assert {"audit_v2", "audit_v3"} <= refs_of(lakehouse_catalog, "fact_transactions")


# -- snapshot expiry ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expired_before_the_cutoff(server_settings, tmp_path_factory):
    """Three publications, rollback tags tidied to the newest (none protects v2 any more), then
    snapshots older than the cutoff expired: (catalog, v1's fact files, v2's, the expiry's report)."""
    with module_lakehouse(server_settings, tmp_path_factory) as catalog:
        cutoff = publish_three(catalog)
        v1, v2 = publications(catalog)[:2]
        v1_files, v2_files = files_of(catalog, v1), files_of(catalog, v2)
        tidy_refs(catalog, keep=1)
        yield catalog, v1_files, v2_files, expire_snapshots(catalog, older_than=cutoff)


def test_a_publication_current_within_the_retention_window_stays_readable_as_of(expired_before_the_cutoff, query):
    catalog, *_ = expired_before_the_cutoff

    code, rows, _ = query(catalog, "v2")
    assert code == 0 and rows == totals(SECOND)


def test_a_publication_superseded_before_the_retention_window_is_gone(expired_before_the_cutoff, query):
    catalog, *_ = expired_before_the_cutoff

    code, _, error = query(catalog, "v1")
    assert code == 2
    assert "no longer readable: maintenance expired its snapshots of dim_customers, dim_accounts" in error


def test_expiry_deletes_the_data_files_only_expired_snapshots_needed(expired_before_the_cutoff):
    _, v1_files, v2_files, expired = expired_before_the_cutoff

    assert v1_files and not any(os.path.exists(path) for path in v1_files)
    assert all(os.path.exists(path) for path in v2_files)
    fact = next(e for e in expired if e.table == "analytics.fact_transactions")
    assert fact.snapshots_expired > 0 and fact.data_files_deleted == len(v1_files)


@pytest.fixture(scope="module")
def expired_before_now(server_settings, tmp_path_factory):
    """Three publications, rollback tags tidied to the newest, then every snapshot older than now
    expired: the catalog."""
    with module_lakehouse(server_settings, tmp_path_factory) as catalog:
        publish_three(catalog)
        tidy_refs(catalog, keep=1)
        expire_snapshots(catalog, older_than=datetime.now(timezone.utc))
        yield catalog


def test_expiry_leaves_every_file_a_snapshot_still_needs(expired_before_now):
    for name in ("dim_customers", "dim_accounts", "dim_dates", "fact_transactions"):
        table = star_table(expired_before_now, name)
        assert all(os.path.exists(local_path(path)) for path in reachable_files(table.io, table.metadata))


def test_the_latest_publication_stays_readable_after_expiring_everything_older_than_now(expired_before_now, query):
    code, rows, _ = query(expired_before_now)
    assert code == 0 and rows == totals(THIRD)


def test_a_version_in_the_rollback_window_survives_expiry_and_can_be_rolled_back_to(lakehouse_catalog, three_publications, query):
    tidy_refs(lakehouse_catalog, keep=3)

    expire_snapshots(lakehouse_catalog, older_than=datetime.now(timezone.utc))
    rollback(lakehouse_catalog, "v1", keep=3)

    code, rows, _ = query(lakehouse_catalog)
    assert code == 0 and rows == totals(FIRST)


def test_an_expiry_commit_fails_if_a_ref_moved_since_the_table_was_read(lakehouse_catalog, three_publications):
    from pyiceberg.exceptions import CommitFailedException

    from financial_assets.maintenance.lakehouse import commit_expiry

    v1 = publications(lakehouse_catalog)[0]
    read = star_table(lakehouse_catalog, "fact_transactions")  # as expiry read it, before a rollback to v1
    rollback(lakehouse_catalog, "v1")

    with pytest.raises(CommitFailedException):
        commit_expiry(lakehouse_catalog.load(), read, [v1.snapshots["fact_transactions"]])
    assert star_table(lakehouse_catalog, "fact_transactions").metadata.current_snapshot_id == v1.snapshots["fact_transactions"]


def test_snapshots_younger_than_the_retention_are_not_expired(lakehouse_catalog, three_publications):
    tidy_refs(lakehouse_catalog, keep=1)

    expired = expire_snapshots(lakehouse_catalog, older_than=datetime.now(timezone.utc) - timedelta(days=7))

    assert sum(e.snapshots_expired for e in expired) == 0


def test_expiry_covers_the_raw_zone_and_deletes_its_replaced_files(lakehouse_catalog):
    schema = pa.schema([pa.field("customer_id", pa.int64())])
    raw = lakehouse_catalog.load().create_table(lakehouse_catalog.raw_table("customers"), schema=schema, properties=TABLE_PROPERTIES)
    raw.append(pa.table({"customer_id": [0]}, schema=schema))
    for load in (1, 2):  # full snapshots, as a small table's loads are
        raw.overwrite(pa.table({"customer_id": [load]}, schema=schema))
    replaced = [local_path(f.file.file_path) for s in raw.snapshots()[:-1] for f in raw.scan(snapshot_id=s.snapshot_id).plan_files()]

    [expired] = [e for e in expire_snapshots(lakehouse_catalog, datetime.now(timezone.utc)) if e.table == "raw.customers"]

    assert expired.snapshots_expired == len(raw.snapshots()) - 1
    assert replaced and not any(os.path.exists(path) for path in replaced)
    assert raw.refresh().scan().to_arrow().column("customer_id").to_pylist() == [2]


# -- compaction ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compacted(server_settings, tmp_path_factory, spark):
    """v1 published with 3 fact files, then compacted: (catalog, v1's publication, the compaction)."""
    with module_lakehouse(server_settings, tmp_path_factory) as catalog:
        published = build_and_publish(catalog, "v1", THIRD, fact_files=3)
        yield catalog, published, compact_fact_transactions(spark, catalog, min_input_files=2)


def test_compaction_rewrites_the_published_facts_into_fewer_files(compacted):
    _, _, compaction = compacted

    assert (compaction.files_before, compaction.files_after, compaction.skipped) == (3, 1, None)


def test_compaction_is_published_and_readers_follow_it(compacted, query):
    catalog, published, compaction = compacted

    current = latest_publication(catalog)
    assert current == compaction.publication
    assert (current.version, current.kind) == ("v1", "compaction")
    assert current.snapshots["fact_transactions"] == star_table(catalog, "fact_transactions").metadata.current_snapshot_id
    assert {k: v for k, v in current.snapshots.items() if k != "fact_transactions"} == {
        k: v for k, v in published.snapshots.items() if k != "fact_transactions"
    }
    assert len(files_of(catalog, current)) == 1 and query(catalog)[1] == totals(THIRD)


def test_compaction_moves_the_versions_rollback_tag_onto_the_compacted_snapshot(compacted):
    catalog, _, compaction = compacted

    tag = star_table(catalog, "fact_transactions").refs()[publication_tag("v1")]
    assert tag.snapshot_id == compaction.publication.snapshots["fact_transactions"]


def test_compaction_of_a_single_file_publishes_nothing(lakehouse_catalog, spark):
    build_and_publish(lakehouse_catalog, "v1", THIRD, fact_files=1)
    count = len(publications(lakehouse_catalog))

    compaction = compact_fact_transactions(spark, lakehouse_catalog, min_input_files=2)

    assert (compaction.files_before, compaction.files_after, compaction.publication) == (1, 1, None)
    assert len(publications(lakehouse_catalog)) == count


def test_compaction_is_skipped_while_main_is_not_the_published_snapshot(lakehouse_catalog, spark):
    first = build_and_publish(lakehouse_catalog, "v1", FIRST, fact_files=3)
    build_and_publish(lakehouse_catalog, "v2", SECOND, fact_files=3)
    fact = star_table(lakehouse_catalog, "fact_transactions")
    with fact.manage_snapshots() as manage:  # as a crash between a publication row and its main move leaves it
        manage.set_current_snapshot(snapshot_id=first.snapshots["fact_transactions"])

    compaction = compact_fact_transactions(spark, lakehouse_catalog)

    assert compaction.skipped.startswith("main of analytics.fact_transactions")
    assert data_file_count(lakehouse_catalog, "fact_transactions", fact.refresh().metadata.current_snapshot_id) == 3


# -- the Dagster asset and its job (its automation: test_definitions.py) ---------------------------


def test_the_maintenance_asset_compacts_expires_and_reports_what_it_did(lakehouse_catalog, spark, tmp_path):
    from dagster import DagsterInstance, RunConfig, materialize

    from financial_assets.resources.star_schema_engine import LocalSparkEngine
    from financial_assets.maintenance.assets import MaintenanceConfig, lakehouse_maintenance
    from financial_assets.query.catalogs import DuckDBFile
    from financial_assets.resources import LakehouseResource, ReaderCatalogResource, SparkResource

    build_and_publish(lakehouse_catalog, "v1", FIRST)
    build_and_publish(lakehouse_catalog, "v2", THIRD, fact_files=3)
    duckdb_path = str(tmp_path / "analytics.duckdb")

    result = materialize(
        [lakehouse_maintenance],
        resources={
            "lakehouse": LakehouseResource.for_catalog(lakehouse_catalog),
            "reader_catalog": ReaderCatalogResource(duckdb_path=duckdb_path),
            "star_schema_engine": LocalSparkEngine(spark=SparkResource(master="local[2]")),
        },
        run_config=RunConfig({"lakehouse_maintenance": MaintenanceConfig(retention_days=0, keep=1)}),
        instance=DagsterInstance.ephemeral(),
    )

    [event] = result.get_asset_materialization_events()
    metadata = {key: value.value for key, value in event.materialization.metadata.items()}
    assert (metadata["files_before_compaction"], metadata["files_after_compaction"]) == (3, 1)
    # v1's file of each table; v2's small fact files were published until this run began: kept for now
    assert metadata["snapshots_expired"] > 0 and metadata["data_files_deleted"] == 4
    assert metadata["files_deleted"] > metadata["data_files_deleted"]
    assert DuckDBFile(duckdb_path).follows(latest_publication(lakehouse_catalog))


def test_without_a_local_spark_engine_maintenance_skips_compaction_and_still_expires(lakehouse_catalog, tmp_path):
    from dagster import DagsterInstance, RunConfig, materialize

    from financial_assets.resources.glue import GlueEngine
    from financial_assets.maintenance.assets import MaintenanceConfig, lakehouse_maintenance
    from financial_assets.resources import LakehouseResource, ReaderCatalogResource

    build_and_publish(lakehouse_catalog, "v1", FIRST)
    build_and_publish(lakehouse_catalog, "v2", THIRD, fact_files=3)

    result = materialize(
        [lakehouse_maintenance],
        resources={
            "lakehouse": LakehouseResource.for_catalog(lakehouse_catalog),
            "reader_catalog": ReaderCatalogResource(duckdb_path=None),
            "star_schema_engine": GlueEngine(job_name="transform", staging_s3_uri="s3://lake/glue", pipes_bucket="lake"),
        },
        run_config=RunConfig({"lakehouse_maintenance": MaintenanceConfig(retention_days=0, keep=1)}),
        instance=DagsterInstance.ephemeral(),
    )

    [event] = result.get_asset_materialization_events()
    metadata = {key: value.value for key, value in event.materialization.metadata.items()}
    assert metadata["compaction"] == "GlueEngine has no Spark session in this process"
    assert metadata["snapshots_expired"] > 0 and latest_publication(lakehouse_catalog).kind == "publish"


def test_the_full_pipeline_does_not_run_maintenance():
    from dagster import Definitions

    from financial_assets.analytics import ANALYTICS_ASSETS
    from financial_assets.automation.jobs import JOBS
    from financial_assets.maintenance.assets import MAINTENANCE_ASSETS
    from financial_assets.raw import RAW_ASSETS
    from financial_assets.resources import deployment_resources
    from financial_assets.settings import Settings
    from financial_assets.source_assets import SOURCE_ASSETS

    definitions = Definitions(
        assets=[*SOURCE_ASSETS, *RAW_ASSETS, *ANALYTICS_ASSETS, *MAINTENANCE_ASSETS], jobs=JOBS,
        resources=deployment_resources(Settings.from_env({})),
    )

    full = definitions.resolve_job_def("full_pipeline")
    maintenance = definitions.resolve_job_def("maintain_lakehouse")
    assert "lakehouse_maintenance" not in {node.name for node in full.nodes_in_topological_order}
    assert [node.name for node in maintenance.nodes_in_topological_order] == ["lakehouse_maintenance"]
