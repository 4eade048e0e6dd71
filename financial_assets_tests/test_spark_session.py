"""The local Spark session's JVM artifacts: resolved by Ivy once, then loaded straight from the cache."""

from pathlib import Path

from financial_assets.transform.session import JVM_PACKAGES, _resolved_jars_file, resolved_jars, session_config


def remember(jars: list[Path]) -> None:
    listing = _resolved_jars_file()
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{jar.as_uri()}\n" for jar in jars))


def test_a_first_start_resolves_the_packages_with_ivy_in_the_projects_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FIN_CACHE_DIR", str(tmp_path))
    config = session_config()

    assert config["spark.jars.packages"] == ",".join(JVM_PACKAGES)
    assert config["spark.jars.ivy"] == str(tmp_path / "ivy")
    assert "spark.jars" not in config


def test_a_later_start_loads_the_jars_ivy_resolved_and_skips_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("FIN_CACHE_DIR", str(tmp_path))
    jars = [tmp_path / "ivy" / "jars" / name for name in ("iceberg-spark-runtime.jar", "postgresql.jar")]
    jars[0].parent.mkdir(parents=True)
    for jar in jars:
        jar.write_bytes(b"PK")
    remember(jars)
    config = session_config()

    assert config["spark.jars"] == ",".join(jar.as_uri() for jar in jars)
    assert "spark.jars.packages" not in config


def test_a_jar_gone_from_the_cache_sends_the_next_start_back_to_ivy(tmp_path, monkeypatch):
    monkeypatch.setenv("FIN_CACHE_DIR", str(tmp_path))
    remember([tmp_path / "ivy" / "jars" / "deleted.jar"])

    assert resolved_jars() is None
    assert session_config()["spark.jars.packages"] == ",".join(JVM_PACKAGES)


def test_the_suites_session_left_the_list_of_jars_it_runs_with(spark):
    loaded = spark.sparkContext.getConf().get("spark.jars").split(",")

    assert resolved_jars() is not None
    assert resolved_jars().split(",") == loaded
    assert any("iceberg-spark-runtime" in jar for jar in loaded)


def test_a_cluster_session_ships_the_iceberg_runtime_and_keeps_the_operators_spark_defaults():
    config = session_config(master="spark://spark-master.internal:7077")

    assert "spark.jars" in config or "spark.jars.packages" in config
    assert not {"spark.sql.shuffle.partitions", "spark.driver.memory", "spark.ui.enabled"} & set(config)


def test_the_sessions_this_process_starts_record_no_python_call_sites(spark):
    from pyspark.errors.utils import is_debugging_enabled

    from financial_assets.transform.session import DRIVER_SETTINGS

    assert not is_debugging_enabled()  # what PySpark asks before it records a call site
    for master in ("local[2]", "spark://spark-master.internal:7077"):
        assert DRIVER_SETTINGS.items() <= session_config(master=master).items()


def test_a_process_that_must_resolve_waits_while_another_one_resolves(tmp_path, monkeypatch):
    import subprocess
    import sys

    from financial_assets.transform.session import _ivy_resolution_lock

    monkeypatch.setenv("FIN_CACHE_DIR", str(tmp_path))
    # Another process, as spark_session would be: it gives up at once if it cannot take the lock.
    other = ("import fcntl, sys; lock = open(sys.argv[1], 'a')\n"
             "try: fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError: print('waits')\n"
             "else: print('resolves')\n")
    lock_file = str(tmp_path / "ivy" / ".resolution.lock")

    with _ivy_resolution_lock():
        while_held = subprocess.run([sys.executable, "-c", other, lock_file], capture_output=True, text=True).stdout
    after = subprocess.run([sys.executable, "-c", other, lock_file], capture_output=True, text=True).stdout

    assert (while_held.strip(), after.strip()) == ("waits", "resolves")
