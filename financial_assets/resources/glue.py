"""The star schema built by an AWS Glue job, reporting back through Dagster Pipes.

The job (created by infrastructure-as-code: Glue 6.0 with ``--datalake-formats iceberg``, its role,
``--additional-python-modules``) runs ``glue_scripts/transform-to-star-schema.py``, which calls the
same `financial_assets.lakehouse.star_builds.build_and_record` as the local engine, on the same Iceberg catalog: the run's
``--catalog-*`` arguments name it (`financial_assets.lakehouse.catalog.glue_job_arguments`), on
AWS the Glue Data Catalog and the S3 warehouse. Before each run this engine brings the job's
code up to date on S3, uploading only what changed:

- the script, to the job's own ``ScriptLocation`` (asked from Glue), when its SHA-256 differs;
- the `financial_assets` package as a zip named by its SHA-256 under ``staging_s3_uri``, when no
  such object exists yet; the run gets it through ``--extra-py-files``, so concurrent runs of
  different code versions never overwrite each other's package.

Pipes: the Dagster context goes to S3 (``PipesS3ContextInjector``); the job writes its messages
(logs, one materialization per table, a failure's exception) to S3 (``PipesS3MessageReader``);
where both live reaches the job as the ``--dagster-pipes-context`` / ``--dagster-pipes-messages``
job arguments that `PipesGlueClient` adds.

The PII key never travels as a job argument (the Glue console shows arguments): the job reads it
from the Secrets Manager secret `pii_key_secret_id`, which must hold the same key as the local
deployment's FIN_PII_HMAC_KEY for tokens to agree across engines.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import boto3
from dagster_aws.pipes import PipesGlueClient, PipesS3ContextInjector, PipesS3MessageReader
from pydantic import Field

from financial_assets.lakehouse.catalog import LakehouseCatalog, glue_job_arguments
from financial_assets.resources.glue_package import (
    SCRIPT_PATH,
    entry_script,
    package_zip,
    upload_if_changed,
)
from financial_assets.resources.star_schema_engine import StarSchemaEngine


class _PrefixedS3MessageReader(PipesS3MessageReader):
    """`PipesS3MessageReader` with its messages below a key prefix (for IAM and lifecycle rules)."""

    def __init__(self, *, key_prefix: str, **kwargs):
        super().__init__(**kwargs)
        self._key_prefix = key_prefix

    @contextmanager
    def get_params(self):
        with super().get_params() as params:
            yield {**params, "key_prefix": f"{self._key_prefix}{params['key_prefix']}"}


class GlueEngine(StarSchemaEngine):
    """The build runs as a run of the AWS Glue job `job_name`."""

    job_name: str = Field(description="The Glue job that runs glue_scripts/transform-to-star-schema.py.")
    staging_s3_uri: str = Field(
        description="s3://bucket/prefix for the financial_assets package zip shipped to the job."
    )
    pipes_bucket: str = Field(description="Bucket for the Pipes context and the job's messages.")
    pipes_prefix: str = Field(default="dagster-pipes/", description="Key prefix for the Pipes objects.")
    pii_key_secret_id: str | None = Field(
        default=None, description="Secrets Manager secret holding the PII HMAC key (needed unless clear text)."
    )
    region: str | None = Field(default=None, description="AWS region; boto's default chain when unset.")
    endpoint_url: str | None = Field(
        default=None, description="AWS endpoint other than AWS's own (moto), for Glue and S3."
    )
    script_path: str = Field(default=str(SCRIPT_PATH), description="The entry-point script to upload.")
    message_interval_s: float = Field(default=5.0, description="Seconds between reads of new messages.")

    def aws_client(self, service: str):
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def glue_client(self):
        """The Glue client `PipesGlueClient` drives (the tests return a stand-in here)."""
        return self.aws_client("glue")

    def job_arguments(
        self, catalog: LakehouseCatalog, pii, version: str, thresholds, full_refresh: bool = False
    ) -> dict[str, str]:
        """The run's arguments: the catalog (``--catalog-*``), the version, the audit's
        thresholds, and where the PII key is (never the key itself)."""
        arguments = {
            **glue_job_arguments(catalog),
            "--version": version,
            "--quality-thresholds": thresholds.to_json(),
        }
        if full_refresh:
            arguments["--full-refresh"] = "true"
        if pii.clear_text:
            arguments["--pii-clear-text"] = "true"
        elif self.pii_key_secret_id:
            arguments["--pii-key-secret-id"] = self.pii_key_secret_id
        else:
            raise ValueError(
                "GlueEngine needs pii_key_secret_id (a Secrets Manager secret holding the PII HMAC "
                "key), or the PII policy's explicit opt-in to clear text"
            )
        return arguments

    def build(self, context, lakehouse, pii, version, thresholds, full_refresh=False):
        catalog = lakehouse.catalog()
        arguments = self.job_arguments(catalog, pii, version, thresholds, full_refresh)
        if catalog.kind != "glue" or not catalog.warehouse.startswith("s3://"):
            context.log.warning(f"{catalog!r} is not the Glue Data Catalog on S3: an AWS Glue job cannot reach it")
        glue, s3 = self.glue_client(), self.aws_client("s3")

        script_uri = glue.get_job(JobName=self.job_name)["Job"]["Command"]["ScriptLocation"]
        script = entry_script(Path(self.script_path))
        package = package_zip()
        package_uri = f"{self.staging_s3_uri.rstrip('/')}/{package.name}"
        for uri, artifact in ((script_uri, script), (package_uri, package)):
            uploaded = upload_if_changed(s3, uri, artifact)
            context.log.info(f"{'uploaded' if uploaded else 'unchanged'}: {uri} (sha256 {artifact.sha256[:12]})")
        arguments["--extra-py-files"] = package_uri

        client = PipesGlueClient(
            client=glue,
            context_injector=PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3, key_prefix=self.pipes_prefix),
            message_reader=_PrefixedS3MessageReader(
                bucket=self.pipes_bucket, client=s3, key_prefix=self.pipes_prefix, interval=self.message_interval_s
            ),
        )
        context.log.info(f"building star schema version {version} with Glue job {self.job_name}")
        invocation = client.run(
            context=context, start_job_run_params={"JobName": self.job_name, "Arguments": arguments}
        )
        yield from invocation.get_results()
