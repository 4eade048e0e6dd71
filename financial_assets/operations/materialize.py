"""`financial-assets materialize`: run assets in this process, recorded in DAGSTER_HOME.

The same runs `dagster dev` shows, without a daemon: what `make demo` uses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def register(commands) -> None:
    parser = commands.add_parser(
        "materialize",
        help="materialize assets in this process (the run shows up in `make dev`)",
        description="Materialize assets in this process; the run is recorded in DAGSTER_HOME.",
    )
    parser.add_argument(
        "--select", default="*", help="Dagster asset selection, e.g. 'group:raw' (default: every asset)"
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="reload the raw tables from scratch instead of past their high-water marks",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster events printed while running (default WARNING: quarantines, new columns)",
    )
    parser.set_defaults(handler=run)


def _full_refresh_config(selected_keys) -> dict:
    from financial_assets.analytics import star_schema
    from financial_assets.raw import RAW_ASSETS

    ops = {raw.op.name: {"config": {"full_refresh": True}} for raw in RAW_ASSETS if raw.key in selected_keys}
    if set(star_schema.keys) & set(selected_keys):
        ops[star_schema.op.name] = {"config": {"full_refresh": True}}
    return {"ops": ops}


def run(args: argparse.Namespace) -> int:
    import warnings

    from dagster import BetaWarning

    with warnings.catch_warnings():
        # Dagster flags its selection syntax as beta; that is not the user's concern here.
        warnings.simplefilter("ignore", BetaWarning)
        return _materialize(args)


def _materialize(args: argparse.Namespace) -> int:
    from dagster import AssetSelection, DagsterInstance, materialize

    from financial_assets.definitions import defs

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    assets = list(defs.assets)
    selected = AssetSelection.from_string(args.select).resolve(defs.resolve_asset_graph())
    run_config = _full_refresh_config(selected) if args.full_refresh else {}
    run_config["loggers"] = {"console": {"config": {"log_level": args.log_level}}}

    started = time.monotonic()
    print(f"materializing {len(selected)} assets ({args.select})...", file=sys.stderr)
    result = materialize(
        assets,
        selection=args.select,
        resources=defs.resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        rows = metadata.get("dagster/row_count")
        mode = metadata.get("load_mode")
        print(
            f"  {event.asset_key.to_user_string():<28} "
            f"{(f'{rows.value:,} rows' if rows else ''):>16}  {mode.value if mode else ''}"
        )
    checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    if checks:
        failed = [f"{c.asset_key.to_user_string()}.{c.check_name} ({c.severity.value})" for c in checks if not c.passed]
        print(f"  checks: {len(checks) - len(failed)} passed, {len(failed)} failed"
              + (f": {', '.join(failed)}" if failed else ""))
    elapsed = time.monotonic() - started
    if not result.success:
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                print(f"FAILED {event.step_key}: {event.step_failure_data.error.message.strip()}", file=sys.stderr)
        print(f"run {result.run_id} failed after {elapsed:.1f}s", file=sys.stderr)
        return 1
    print(f"run {result.run_id} succeeded in {elapsed:.1f}s", file=sys.stderr)
    return 0
