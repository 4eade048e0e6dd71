"""Two runs never write the lakehouse at once, whoever started them: every writer claims a slot
of the `lakehouse_writers` pool, which the instance of `make dev` and `make demo` (the repository's
dagster.yaml) limits to one."""

import os
import shutil
import subprocess
import sys
import time

from dagster import DagsterInstance

from financial_assets.automation.policies import LAKEHOUSE_WRITERS
from financial_assets_tests.conftest import REPO_ROOT, TEST_PII_KEY, forget_catalog, new_catalog
from financial_assets_tests.raw_sources import load_hand_built_sources

OTHER_RUN, OTHER_STEP = "a-run-started-from-the-ui", "raw_accounts"


def wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_cli_run_waits_while_another_run_holds_the_writers_slot(source_databases, server_settings, tmp_path):
    load_hand_built_sources(source_databases)
    catalog = new_catalog(server_settings, f"file://{tmp_path / 'lakehouse'}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    storage = instance.event_log_storage
    # Another run's writer step holds the pool's one slot, as a step of a run launched from the UI does.
    storage.initialize_concurrency_limit_to_default(LAKEHOUSE_WRITERS)
    assert storage.claim_concurrency_slot(LAKEHOUSE_WRITERS, OTHER_RUN, OTHER_STEP).is_claimed
    environment = {
        **os.environ, **source_databases.env(tmp_path / "lakehouse", catalog.name),
        "FIN_PII_HMAC_KEY": TEST_PII_KEY, "DAGSTER_HOME": str(home),
    }
    cli = subprocess.Popen(
        [sys.executable, "-m", "financial_assets.cli", "materialize", "--select", "raw_customers"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: storage.get_concurrency_info(LAKEHOUSE_WRITERS).pending_step_count == 1 or cli.poll() is not None,
                 "the CLI's step to queue for the pool")
        time.sleep(1.0)  # a few claim attempts, all refused

        assert cli.poll() is None, cli.stdout.read()
        assert not catalog.load().table_exists(catalog.raw_table("customers"))

        storage.free_concurrency_slot_for_step(OTHER_RUN, OTHER_STEP)
        output, _ = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
        instance.dispose()

    try:
        assert cli.returncode == 0, output
        assert catalog.load().table_exists(catalog.raw_table("customers"))
    finally:
        forget_catalog(catalog)
