"""The `financial-assets` command. Each subcommand lives beside the code it drives."""

from __future__ import annotations

import argparse
import sys

from financial_assets.operations import materialize, versions
from financial_assets.query import cli as query_cli
from financial_assets.query import defects as defects_cli
from financial_assets.sample_data import cli as seed_cli
from financial_assets.lakehouse.catalog import CatalogUnavailableError
from financial_assets.settings import SettingsError
from financial_assets.sources.errors import SourceUnavailableError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="financial-assets",
        description="Operate the financial_assets platform: sample data, runs and queries.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seed_cli.register(commands)
    materialize.register(commands)
    query_cli.register(commands)
    defects_cli.register(commands)
    versions.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (SettingsError, CatalogUnavailableError, ConnectionError) as error:
        if isinstance(error, ConnectionError) and not isinstance(error, SourceUnavailableError):
            raise
        # Configuration and connectivity problems are the user's to fix: one line, no traceback.
        print(f"financial-assets: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("financial-assets: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
