"""`financial-assets versions` and `financial-assets rollback VERSION`: the operator's view of WAP.

Both read the Iceberg tables `star_schema_builds` and `star_schema_publications`
(`financial_assets.lakehouse.publication`); neither imports Dagster or PySpark.
"""

from __future__ import annotations

import argparse
import sys

PUBLISHED, KEPT, RETIRED, BLOCKED, BUILT = "PUBLISHED", "kept", "retired", "blocked", "built"
KEEP_HELP = "the rollback window: how many of the latest published versions are kept (default: maintenance's, 5)"


def register(commands) -> None:
    listing = commands.add_parser(
        "versions",
        help="list star-schema builds: published, kept for rollback, retired, blocked by a check, or built",
        description=f"List every audited build of the star schema, newest first. States: {PUBLISHED} (what "
        f"readers see), {KEPT} (an earlier publication in the rollback window), {RETIRED} (published once, "
        f"now outside the window), {BLOCKED} (a blocking check failed), {BUILT} (passed, never published).",
    )
    listing.add_argument("--keep", type=int, help=KEEP_HELP)
    listing.set_defaults(handler=list_versions)
    rollback = commands.add_parser(
        "rollback", help="point readers back at an earlier published version that is still kept"
    )
    rollback.add_argument("version", help="a version listed by `financial-assets versions` as kept")
    rollback.add_argument("--keep", type=int, help=KEEP_HELP)
    rollback.set_defaults(handler=roll_back)


def version_states(catalog, keep: int | None = None) -> list[tuple]:
    """(build, state) for every audited build, newest first; ``keep`` None: the default window."""
    from financial_assets.lakehouse.publication import DEFAULT_KEEP, builds, kept_versions, publications

    keep = DEFAULT_KEEP if keep is None else keep

    history = publications(catalog)
    current = history[-1].version if history else None
    kept = set(kept_versions(catalog, keep))
    ever_published = {p.version for p in history}
    listing = []
    for build in reversed(builds(catalog)):
        if build.version == current:
            state = PUBLISHED
        elif build.version in kept:
            state = KEPT
        elif build.version in ever_published:
            state = RETIRED
        elif not build.publishable:
            state = BLOCKED
        else:
            state = BUILT
        listing.append((build, state))
    return listing


def list_versions(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.catalog import CatalogUnavailableError
    from financial_assets.settings import Settings

    try:
        listing = version_states(Settings.from_env().catalog(), args.keep)
    except CatalogUnavailableError as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    print(f"{'version':<28}{'built_at (UTC)':<21}{'mode':<13}{'state':<11}{'fact rows':>11}  failed checks")
    for build, state in listing:
        failed = ", ".join(build.failed_blocking_checks + [f"{w} (warn)" for w in build.failed_warnings]) or "-"
        print(
            f"{build.version:<28}{build.built_at:%Y-%m-%d %H:%M:%S}  {build.mode or '-':<13}{state:<11}"
            f"{build.row_counts.get('fact_transactions', 0):>11,}  {failed}"
        )
    if not listing:
        print("(no build yet)")
    return 0


def roll_back(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.catalog import CatalogUnavailableError
    from financial_assets.lakehouse.publication import DEFAULT_KEEP, PublicationError, publications, rollback
    from financial_assets.query.catalogs import check_readers, refresh_readers
    from financial_assets.query.duckdb_views import ReaderError, require_readable
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    catalog = settings.catalog()
    try:
        earlier = [p for p in publications(catalog) if p.version == args.version]
        if earlier:  # kept versions are tagged, but a --keep wider than maintenance's may name expired ones
            require_readable(catalog, earlier[-1])
        check_readers(catalog, settings.duckdb_path)
        publication = rollback(catalog, args.version, keep=DEFAULT_KEEP if args.keep is None else args.keep)
    except (PublicationError, ReaderError, CatalogUnavailableError) as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    updated = refresh_readers(catalog, publication, settings.duckdb_path)
    print(f"readers now see version {publication.version} ({', '.join(updated) or 'Athena reads main'})")
    return 0
