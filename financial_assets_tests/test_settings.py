"""Settings: defaults for the local servers, one clear line for every bad value."""

import pytest

from financial_assets.settings import Settings, SettingsError, redact_url


def test_defaults_point_at_the_local_servers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})

    assert settings.postgres_url == "postgresql://financial@127.0.0.1:25432/financial"
    assert settings.mongo_url == "mongodb://127.0.0.1:27117/"
    assert settings.mongo_database == "financialdb"
    assert settings.lakehouse_uri == str(tmp_path / "var" / "lakehouse")
    assert settings.s3_endpoint_url is None


def test_local_ports_move_the_default_urls():
    settings = Settings.from_env({"FIN_POSTGRES_PORT": "6000", "FIN_MONGO_PORT": "7000"})

    assert settings.postgres_url.endswith(":6000/financial")
    assert settings.mongo_url == "mongodb://127.0.0.1:7000/"


def test_an_s3_lakehouse_is_kept_as_an_uri_without_trailing_slash():
    assert Settings.from_env({"FIN_LAKEHOUSE_URI": "s3://bank-lake/prod/"}).lakehouse_uri == "s3://bank-lake/prod"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FIN_POSTGRES_URL", "mysql://db/financial"),
        ("FIN_POSTGRES_URL", "postgresql://host-without-database"),
        ("FIN_MONGO_URL", "http://127.0.0.1:27017"),
        ("FIN_MONGO_DATABASE", "has space"),
        ("FIN_LAKEHOUSE_URI", "s3:///no-bucket"),
        ("FIN_LAKEHOUSE_URI", "gs://bucket/prefix"),
        ("FIN_S3_ENDPOINT_URL", "127.0.0.1:9000"),
        ("FIN_POSTGRES_PORT", "70000"),
        ("FIN_STAR_SCHEMA_ENGINE", "emr"),
        ("FIN_PII_CLEAR_TEXT", "maybe"),
        ("FIN_CATALOG_URL", "mysql://db/catalog"),
        ("FIN_CATALOG_NAME", "Has-Dashes"),
        ("FIN_SOURCE_RETRY_DELAY_S", "two"),
        ("FIN_SOURCE_RETRY_DELAY_S", "-1"),
        ("FIN_SOURCE_RETRY_DELAY_S", "nan"),
    ],
)
def test_an_invalid_value_fails_with_one_line_naming_the_variable(variable, value):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})

    message = str(raised.value)
    assert message.startswith(variable) and "\n" not in message


def test_source_steps_retry_after_2_s_unless_fin_source_retry_delay_s_says_otherwise():
    assert Settings.from_env({}).source_retry_delay_s == 2.0
    assert Settings.from_env({"FIN_SOURCE_RETRY_DELAY_S": "0.5"}).source_retry_delay_s == 0.5


def test_the_default_lakehouse_is_read_through_var_analytics_duckdb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert Settings.from_env({}).duckdb_path == str(tmp_path / "var" / "analytics.duckdb")


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FIN_LAKEHOUSE_URI", "/srv/other-lakehouse"),
        ("FIN_CATALOG_NAME", "other"),
        ("FIN_CATALOG_URL", "postgresql://financial@db.internal:5432/catalog"),
    ],
)
def test_a_lakehouse_chosen_by_its_settings_gets_a_duckdb_file_of_its_own(variable, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    path = Settings.from_env({variable: value}).duckdb_path

    assert path != str(tmp_path / "var" / "analytics.duckdb")
    assert path.startswith(str(tmp_path / "var" / "analytics-")) and path.endswith(".duckdb")
    assert Settings.from_env({variable: value}).duckdb_path == path  # the same lakehouse, the same file


def test_two_lakehouses_never_share_a_derived_duckdb_file():
    paths = {Settings.from_env({"FIN_LAKEHOUSE_URI": f"/srv/lakehouse-{n}"}).duckdb_path for n in range(3)}

    assert len(paths) == 3


def test_fin_duckdb_path_names_the_file_whatever_the_lakehouse(tmp_path):
    settings = Settings.from_env({"FIN_LAKEHOUSE_URI": "/srv/other", "FIN_DUCKDB_PATH": str(tmp_path / "bi.duckdb")})

    assert settings.duckdb_path == str(tmp_path / "bi.duckdb")


def test_an_invalid_url_error_never_shows_the_password():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FIN_POSTGRES_URL": "postgresql://app:hunter2-not-real@db.internal"})

    assert "hunter2-not-real" not in str(raised.value)


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("mongodb://127.0.0.1:27117/") == "mongodb://127.0.0.1:27117/"


def test_local_spark_is_the_default_star_schema_engine():
    assert Settings.from_env({}).star_schema_engine == "local"


def test_the_glue_engine_needs_its_job_staging_and_pipes_bucket():
    with pytest.raises(SettingsError, match="^FIN_GLUE_JOB_NAME must be set"):
        Settings.from_env({"FIN_STAR_SCHEMA_ENGINE": "glue"})

    settings = Settings.from_env({
        "FIN_STAR_SCHEMA_ENGINE": "glue",
        "FIN_GLUE_JOB_NAME": "transform-to-star-schema",
        "FIN_GLUE_STAGING_S3_URI": "s3://bank-lake/glue",
        "FIN_GLUE_PIPES_BUCKET": "bank-lake",
    })
    assert (settings.star_schema_engine, settings.glue_job_name) == ("glue", "transform-to-star-schema")


def test_slack_alerts_need_both_token_and_channel():
    with pytest.raises(SettingsError, match="^FIN_SLACK_CHANNEL must be set too"):
        Settings.from_env({"FIN_SLACK_TOKEN": "xoxb-test-only"})


def test_an_invalid_webhook_url_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FIN_ALERT_WEBHOOK_URL": "hooks.example.org/T000/secret-part"})

    assert "secret-part" not in str(raised.value)


def test_the_iceberg_catalog_defaults_to_its_database_on_the_local_postgresql(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = Settings.from_env({}).catalog()

    assert (catalog.kind, catalog.sql_url) == ("sql", "postgresql://financial@127.0.0.1:25432/lakehouse_catalog")
    assert catalog.warehouse == f"file://{tmp_path / 'var' / 'lakehouse'}"
    assert (catalog.raw_table("transactions"), catalog.analytics_table("dim_dates")) == (
        "raw.transactions", "analytics.dim_dates")


def test_glue_as_the_catalog_puts_the_zones_in_glue_databases_named_after_ours():
    catalog = Settings.from_env({"FIN_CATALOG_URL": "glue", "FIN_LAKEHOUSE_URI": "s3://bank-lake/prod"}).catalog()

    assert (catalog.kind, catalog.warehouse) == ("glue", "s3://bank-lake/prod")
    assert (catalog.raw_namespace, catalog.analytics_namespace) == ("financial_data_db_raw", "financial_data_db")


def test_the_catalog_database_password_never_shows_in_its_description():
    catalog = Settings.from_env({"FIN_CATALOG_URL": "postgresql://app:hunter2-not-real@db.internal/catalog"}).catalog()

    assert "hunter2-not-real" not in repr(catalog)
    assert catalog.spark_conf()["spark.sql.catalog.financial_assets.jdbc.password"] == "hunter2-not-real"


def test_the_settings_repr_never_shows_a_secret():
    settings = Settings.from_env({
        "FIN_POSTGRES_URL": "postgresql://app:pg-secret@db.internal/financial",
        "FIN_PII_HMAC_KEY": "pii-secret", "FIN_SLACK_TOKEN": "xoxb-secret", "FIN_SLACK_CHANNEL": "#alerts",
        "FIN_ALERT_WEBHOOK_URL": "https://hooks.example.org/T000/hook-secret",
    })

    assert not any(secret in repr(settings) for secret in ("pg-secret", "pii-secret", "xoxb-secret", "hook-secret"))


def test_a_secret_set_in_the_environment_reaches_its_resource_as_an_envvar_naming_it():
    from dagster import EnvVar

    from financial_assets.resources import deployment_resources

    resources = deployment_resources(Settings.from_env({
        "FIN_POSTGRES_URL": "postgresql://app:pg-secret@db.internal/financial",
        "FIN_PII_HMAC_KEY": "pii-secret", "FIN_SLACK_TOKEN": "xoxb-secret", "FIN_SLACK_CHANNEL": "#alerts",
    }))

    for value, variable in (
        (resources["postgres"].url, "FIN_POSTGRES_URL"),
        (resources["pii"].hmac_key, "FIN_PII_HMAC_KEY"),
        (resources["alerts"].slack.token, "FIN_SLACK_TOKEN"),
    ):
        assert isinstance(value, EnvVar) and value.env_var_name == variable
    assert resources["document_store"].url == "mongodb://127.0.0.1:27117/"  # a default is no secret
    assert resources["alerts"].webhook_url is None


def test_the_resources_take_every_value_from_the_settings(tmp_path):
    from financial_assets.resources import deployment_resources

    settings = Settings.from_env({
        "FIN_MONGO_DATABASE": "events_db", "FIN_SPARK_MASTER": "spark://spark.internal:7077",
        "FIN_ALERT_LOG": str(tmp_path / "alerts.jsonl"), "FIN_PII_CLEAR_TEXT": "true",
    })

    resources = deployment_resources(settings)

    assert resources["document_store"].database == "events_db"
    assert resources["star_schema_engine"].spark.master == "spark://spark.internal:7077"
    assert resources["alerts"].alert_log_path == str(tmp_path / "alerts.jsonl")
    assert resources["pii"].clear_text is True


def test_no_module_but_settings_reads_a_fin_variable():
    import ast

    from financial_assets_tests.conftest import REPO_ROOT

    readers = []
    for path in sorted((REPO_ROOT / "financial_assets").rglob("*.py")):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            arguments = node.args if isinstance(node, ast.Call) else [node.slice] if isinstance(node, ast.Subscript) else []
            if any(isinstance(a, ast.Constant) and str(a.value).startswith("FIN_") for a in arguments):
                readers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")

    assert readers == []


def test_the_services_script_starts_the_servers_where_the_settings_look_for_them():
    from financial_assets.settings import DEFAULT_MONGO_PORT, DEFAULT_POSTGRES_PORT
    from financial_assets_tests.conftest import REPO_ROOT

    script = (REPO_ROOT / "scripts" / "services.sh").read_text()

    assert f"port_setting FIN_POSTGRES_PORT {DEFAULT_POSTGRES_PORT})" in script
    assert f"port_setting FIN_MONGO_PORT {DEFAULT_MONGO_PORT})" in script
    assert '${CACHE_DIR:-$REPO_ROOT/.cache}' in script
