"""`financial-assets versions` and `financial-assets rollback VERSION`: the operator's view of WAP."""

from __future__ import annotations

import argparse
import sys


def register(commands) -> None:
    listing = commands.add_parser(
        "versions", help="list star-schema versions: built, audited, published, kept for rollback"
    )
    listing.set_defaults(handler=list_versions)
    rollback = commands.add_parser(
        "rollback", help="point readers back at an earlier published version that is still kept"
    )
    rollback.add_argument("version", help="a version listed by `financial-assets versions` as kept")
    rollback.set_defaults(handler=roll_back)


def list_versions(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.publication import built_versions, published
    from financial_assets.settings import Settings

    storage = Settings.from_env().lakehouse_storage()
    current = published(storage)
    kept = set(current.history) if current else set()
    print(f"{'version':<28}{'state':<12}{'fact rows':>12}  failed checks")
    for build in reversed(built_versions(storage)):
        if current and build.version == current.version:
            state = "PUBLISHED"
        elif build.version in kept:
            state = "kept"
        elif not build.publishable:
            state = "blocked"
        else:
            state = "built"
        failed = ", ".join(build.failed_blocking_checks + [f"{w} (warn)" for w in build.failed_warnings]) or "-"
        print(f"{build.version:<28}{state:<12}{build.row_counts.get('fact_transactions', 0):>12,}  {failed}")
    return 0


def roll_back(args: argparse.Namespace) -> int:
    from financial_assets.lakehouse.publication import PublicationError, rollback
    from financial_assets.resources import deployment_resources
    from financial_assets.settings import Settings

    settings = Settings.from_env()
    try:
        publication = rollback(settings.lakehouse_storage(), args.version)
    except PublicationError as error:
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    # The readers' catalogs follow the pointer, as after a publish.
    updated = deployment_resources(settings)["reader_catalog"].publish(publication)
    print(f"readers now see version {publication.version} ({', '.join(updated)})")
    return 0
