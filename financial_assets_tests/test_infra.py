"""The infrastructure as code, infra/financial-assets.yaml: its security properties read straight
from the template, cfn-lint and checkov run on it, and its outputs checked against what the
platform's settings accept.

Policies are read as CloudFormation would resolve them, with test parameter values, and asked
questions ("may the Glue role put raw/x?"). Conditions are ignored when answering, so "not
allowed" is a sound answer and "allowed" an upper bound. moto's CloudFormation cannot create this
stack (it has no Secrets Manager, Glue or Athena resource types), so nothing is deployed here.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "infra" / "financial-assets.yaml"
IAC_BIN = REPO_ROOT / ".venv-iac" / "bin"

ACCOUNT = "111122223333"
REGION = "eu-west-1"
PRINCIPAL = f"arn:aws:iam::{ACCOUNT}:role/dagster-host"
NO_VALUE = object()  # AWS::NoValue: the property or list item disappears


# ------------------------------------------------------------------ reading the template


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref X`` reads as ``{"Ref": "X"}``, ``!GetAtt A.B``
    as ``{"Fn::GetAtt": ["A", "B"]}``, any other ``!Name value`` as ``{"Fn::Name": value}``."""


def _short_form(loader: yaml.Loader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _short_form)


def load_template(text: str | None = None) -> dict:
    return yaml.load(TEMPLATE.read_text() if text is None else text, Loader=CloudFormationLoader)


class Stack:
    """The template resolved as CloudFormation would, with ``parameters`` over the defaults and
    predictable physical names, so that policies read as plain ARNs."""

    def __init__(self, template: dict, **parameters: str):
        self.template = template
        self.parameters = {
            name: str(spec["Default"]) for name, spec in template["Parameters"].items() if "Default" in spec
        }
        self.parameters.update({"OrchestratorPrincipalArn": PRINCIPAL, **parameters})
        self.pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws"}
        self.conditions: dict[str, bool] = {}
        for name, expression in template.get("Conditions", {}).items():
            self.conditions[name] = self.resolve(expression)
        self.resources = {
            name: spec for name, spec in template["Resources"].items()
            if self.conditions.get(spec.get("Condition"), True)
        }

    # -- names
    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template["Resources"][name]
        kind, properties = spec["Type"], spec.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            return self.resolve(properties["BucketName"]) if "BucketName" in properties else f"{name.lower()}-generated"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{self.resolve(properties['Name'])}-AbCdEf"
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT}:policy/{name}"
        if kind == "AWS::Glue::Database":
            return self.resolve(properties["DatabaseInput"]["Name"])
        if kind in ("AWS::Glue::Job", "AWS::Glue::SecurityConfiguration", "AWS::Athena::WorkGroup"):
            return self.resolve(properties["Name"])
        return f"{name}-generated"  # keys, roles, instance profiles: names CloudFormation makes up

    def arn(self, name: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.ref(name)}"
        if kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.ref(name)}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{self.ref(name)}"
        raise NotImplementedError(f"Fn::GetAtt {name}.Arn ({kind})")

    # -- intrinsic functions
    def resolve(self, value):
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(function, argument)] = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                assert argument[1] == "Arn", argument
                return self.arn(argument[0])
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::Join":
                return self.resolve(argument[0]).join(self.resolve(argument[1]))
            if function == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.conditions[condition] else when_false)
            if function == "Fn::Equals":
                left, right = self.resolve(argument)
                return left == right
            if function == "Condition":
                return self.conditions[argument]
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _sub(self, argument) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], self.resolve(argument[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return variables[name]
            if "." in name:
                resource, attribute = name.split(".", 1)
                assert attribute == "Arn", name
                return self.arn(resource)
            return self.ref(name)

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)

    # -- reading resources
    def properties(self, name: str) -> dict:
        return self.resolve(self.resources[name].get("Properties", {}))

    def of_type(self, kind: str) -> list[str]:
        return [name for name, spec in self.resources.items() if spec["Type"] == kind]

    def output(self, name: str) -> str:
        return self.resolve(self.template["Outputs"][name]["Value"])

    def object_arn(self, key: str) -> str:
        return f"{self.arn('LakehouseBucket')}/{key}"


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(document: dict) -> list[dict]:
    """A policy document's statements, with Action and Resource always lists."""
    return [
        {**s, "Action": _as_list(s.get("Action", [])), "Resource": _as_list(s.get("Resource", []))}
        for s in _as_list(document["Statement"])
    ]


def role_statements(stack: Stack, role: str) -> list[dict]:
    """Every statement of the identity policies attached to ``role`` in the stack."""
    attached = [
        name for name in stack.of_type("AWS::IAM::ManagedPolicy")
        if {"Ref": role} in stack.resources[name]["Properties"].get("Roles", [])
    ]
    attached += [
        arn["Ref"] for arn in stack.resources[role]["Properties"].get("ManagedPolicyArns", [])
        if isinstance(arn, dict) and "Ref" in arn
    ]
    found = [s for name in attached for s in statements(stack.properties(name)["PolicyDocument"])]
    for inline in stack.properties(role).get("Policies", []):
        found += statements(inline["PolicyDocument"])
    return found


def identity_statements(stack: Stack) -> list[dict]:
    found = [
        s for name in stack.of_type("AWS::IAM::ManagedPolicy") for s in statements(stack.properties(name)["PolicyDocument"])
    ]
    for role in stack.of_type("AWS::IAM::Role"):
        for inline in stack.properties(role).get("Policies", []):
            found += statements(inline["PolicyDocument"])
    return found


def all_policy_statements(stack: Stack) -> list[dict]:
    """Identity, bucket, key and trust policies: every policy document in the stack."""
    found = identity_statements(stack)
    for name in stack.of_type("AWS::S3::BucketPolicy"):
        found += statements(stack.properties(name)["PolicyDocument"])
    for name in stack.of_type("AWS::KMS::Key"):
        found += statements(stack.properties(name)["KeyPolicy"])
    for name in stack.of_type("AWS::IAM::Role"):
        found += statements(stack.properties(name)["AssumeRolePolicyDocument"])
    return found


def lifecycle_rules(stack: Stack, prefix: str) -> list[dict]:
    return [r for r in stack.properties("LakehouseBucket")["LifecycleConfiguration"]["Rules"] if r.get("Prefix") == prefix]


def _matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def allows(policy: list[dict], action: str, resource: str) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` (conditions not evaluated)."""
    assert all(s["Effect"] == "Allow" for s in policy), "identity policies here only allow"
    return any(
        any(_matches(a, action, ignore_case=True) for a in s["Action"])
        and any(_matches(r, resource) for r in s["Resource"])
        for s in policy
    )


def object_resources(policy: list[dict], action: str, bucket_arn: str) -> set[str]:
    """The object keys (patterns) of ``bucket_arn`` on which ``action`` is granted."""
    return {
        r.removeprefix(f"{bucket_arn}/")
        for s in policy if any(_matches(a, action, ignore_case=True) for a in s["Action"])
        for r in s["Resource"] if r.startswith(f"{bucket_arn}/")
    }


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def stack(template) -> Stack:
    return Stack(template)


@pytest.fixture(scope="module")
def glue_role(stack) -> list[dict]:
    return role_statements(stack, "GlueJobRole")


@pytest.fixture(scope="module")
def orchestrator(stack) -> list[dict]:
    return role_statements(stack, "OrchestratorRole")


# ------------------------------------------------------------------ the template format


def test_short_form_tags_read_as_cloudformation_functions():
    snippet = load_template(
        "a: !Ref Bucket\nb: !GetAtt Key.Arn\nc: !Sub 's3://${Bucket}/x'\n"
        "d: !If [Cond, 1, !Ref AWS::NoValue]\ne: !Join [' ', [x, !Ref Y]]\nf: !Equals [!Ref P, 'true']\n"
    )

    assert snippet == {
        "a": {"Ref": "Bucket"},
        "b": {"Fn::GetAtt": ["Key", "Arn"]},
        "c": {"Fn::Sub": "s3://${Bucket}/x"},
        "d": {"Fn::If": ["Cond", 1, {"Ref": "AWS::NoValue"}]},
        "e": {"Fn::Join": [" ", ["x", {"Ref": "Y"}]]},
        "f": {"Fn::Equals": [{"Ref": "P"}, "true"]},
    }


# ------------------------------------------------------------------ the buckets


def test_lakehouse_bucket_is_encrypted_with_the_stacks_rotating_kms_key(stack):
    [rule] = stack.properties("LakehouseBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": stack.arn("DataKey")}
    assert rule["BucketKeyEnabled"] is True
    assert stack.properties("DataKey")["EnableKeyRotation"] is True


def test_every_bucket_is_encrypted_at_rest(stack):
    for bucket in stack.of_type("AWS::S3::Bucket"):
        rules = stack.properties(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert {r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules} <= {"aws:kms", "AES256"}, bucket


def test_every_bucket_blocks_all_public_access(stack):
    for bucket in stack.of_type("AWS::S3::Bucket"):
        properties = stack.properties(bucket)
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }, bucket
        assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, bucket


def test_every_bucket_denies_requests_without_tls(stack):
    policies = {
        stack.resources[name]["Properties"]["Bucket"]["Ref"]: stack.properties(name)["PolicyDocument"]
        for name in stack.of_type("AWS::S3::BucketPolicy")
    }
    for bucket in stack.of_type("AWS::S3::Bucket"):
        arn = stack.arn(bucket)
        denials = [
            s for s in statements(policies[bucket])
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denials, f"{bucket} has no statement denying requests without TLS"
        [deny] = denials
        assert deny["Principal"] == "*" and deny["Action"] == ["s3:*"], bucket
        assert set(deny["Resource"]) == {arn, f"{arn}/*"}, bucket


def test_lakehouse_bucket_keeps_versions_and_expires_noncurrent_ones(stack, template):
    properties = stack.properties("LakehouseBucket")
    [rule] = [r for r in properties["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionExpiration" in r]

    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert rule["Status"] == "Enabled" and "Prefix" not in rule  # the whole bucket
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == stack.parameters["NoncurrentVersionExpirationDays"]
    assert 7 <= template["Parameters"]["NoncurrentVersionExpirationDays"]["Default"] <= 90


def test_dagster_pipes_messages_expire_after_a_few_days(stack, template):
    from financial_assets.resources.glue import GlueEngine

    pipes_prefix = GlueEngine.model_fields["pipes_prefix"].default
    [rule] = lifecycle_rules(stack, prefix=pipes_prefix)

    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == stack.parameters["PipesMessageExpirationDays"]
    assert 1 <= template["Parameters"]["PipesMessageExpirationDays"]["Default"] <= 7


def test_athena_results_expire(stack):
    [rule] = lifecycle_rules(stack, prefix="athena-results/")

    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == stack.parameters["AthenaResultExpirationDays"]


def test_every_bucket_aborts_incomplete_multipart_uploads(stack):
    for bucket in stack.of_type("AWS::S3::Bucket"):
        rules = stack.properties(bucket)["LifecycleConfiguration"]["Rules"]
        aborting = [r for r in rules if "AbortIncompleteMultipartUpload" in r and "Prefix" not in r]
        assert aborting and aborting[0]["Status"] == "Enabled", bucket
        assert aborting[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 7, bucket


def test_lakehouse_bucket_access_is_logged_by_s3_into_the_log_bucket_only(stack):
    logging = stack.properties("LakehouseBucket")["LoggingConfiguration"]
    [delivery] = [s for s in statements(stack.properties("AccessLogBucketPolicy")["PolicyDocument"]) if s["Effect"] == "Allow"]

    assert logging == {"DestinationBucketName": stack.ref("AccessLogBucket"), "LogFilePrefix": "lakehouse/"}
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"} and delivery["Action"] == ["s3:PutObject"]
    assert delivery["Resource"] == [f"{stack.arn('AccessLogBucket')}/lakehouse/*"]
    assert delivery["Condition"]["ArnLike"] == {"aws:SourceArn": stack.arn("LakehouseBucket")}
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


# ------------------------------------------------------------------ Glue

# What each Glue version runs (AWS Glue docs, "Migrating AWS Glue for Spark jobs to AWS Glue
# version 6.0"): Spark, Scala and Iceberg releases.
GLUE_RUNTIMES = {"6.0": {"spark": "4.1.1", "scala": "2.13", "iceberg": "1.11.0"}}


def setup_cfg_pins() -> dict[str, str]:
    """``name -> version`` of every ``name[extras]==version`` requirement in setup.cfg."""
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    pins = {}
    for line in setup["options"]["install_requires"].splitlines():
        if "==" in line and not line.strip().startswith("#"):
            requirement, version = line.strip().split("==")
            pins[requirement.split("[")[0]] = version
    return pins


def spark_conf_pairs(value: str) -> dict[str, str]:
    """A Glue ``--conf`` value (``k=v --conf k=v ...``, as Glue hands it to spark-submit) as a dict."""
    return dict(pair.strip().split("=", 1) for pair in value.split(" --conf "))


def test_glue_job_runs_the_repository_script_on_glue_6(stack):
    from financial_assets.resources.glue_package import SCRIPT_PATH

    job = stack.properties("StarSchemaJob")

    assert job["GlueVersion"] == "6.0"
    assert job["Command"] == {
        "Name": "glueetl",
        "PythonVersion": "3",
        "ScriptLocation": f"s3://{stack.ref('LakehouseBucket')}/glue/scripts/{SCRIPT_PATH.name}",
    }
    assert SCRIPT_PATH.is_file() and SCRIPT_PATH.name == "transform-to-star-schema.py"


def test_glue_version_runs_the_spark_and_iceberg_releases_the_project_pins(stack):
    from financial_assets.lakehouse.catalog import ICEBERG_SPARK_RUNTIME

    runtime = GLUE_RUNTIMES[stack.properties("StarSchemaJob")["GlueVersion"]]
    spark_minor = runtime["spark"].rsplit(".", 1)[0]

    assert setup_cfg_pins()["pyspark"] == runtime["spark"]
    assert ICEBERG_SPARK_RUNTIME == f"org.apache.iceberg:iceberg-spark-runtime-{spark_minor}_{runtime['scala']}:{runtime['iceberg']}"


def test_glue_job_installs_the_python_modules_the_project_pins(stack):
    modules = stack.properties("StarSchemaJob")["DefaultArguments"]["--additional-python-modules"].split(",")
    pinned = dict(module.split("==") for module in modules)

    assert {name.split("[")[0] for name in pinned} == {"dagster-pipes", "pyiceberg"}
    for name, version in pinned.items():
        assert setup_cfg_pins()[name.split("[")[0]] == version, name


def test_glue_job_turns_on_glues_iceberg_runtime(stack):
    assert stack.properties("StarSchemaJob")["DefaultArguments"]["--datalake-formats"] == "iceberg"


def test_glue_jobs_spark_starts_with_the_iceberg_extensions_engine_settings_and_the_deployments_catalog(stack):
    from financial_assets.lakehouse.catalog import ICEBERG_EXTENSIONS
    from financial_assets.settings import Settings
    from financial_assets.transform.session import ENGINE_SETTINGS

    catalog = Settings.from_env(deployment_environment(stack)).catalog()
    conf = spark_conf_pairs(stack.properties("StarSchemaJob")["DefaultArguments"]["--conf"])

    assert conf == {"spark.sql.extensions": ICEBERG_EXTENSIONS, **ENGINE_SETTINGS, **catalog.spark_conf()}
    assert conf[f"spark.sql.catalog.{catalog.name}.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert conf[f"spark.sql.catalog.{catalog.name}.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"


def test_glue_job_is_small_serial_and_time_limited(stack, template):
    job = stack.properties("StarSchemaJob")
    parameters = template["Parameters"]

    assert job["WorkerType"] == "G.1X"
    assert job["NumberOfWorkers"] == stack.parameters["GlueNumberOfWorkers"]
    assert parameters["GlueNumberOfWorkers"]["Default"] <= 4 and parameters["GlueNumberOfWorkers"]["MaxValue"] <= 10
    assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    assert job["Timeout"] == stack.parameters["GlueTimeoutMinutes"]
    assert parameters["GlueTimeoutMinutes"]["Default"] <= 120 and parameters["GlueTimeoutMinutes"]["MaxValue"] <= 480


def test_glue_job_encrypts_its_s3_writes_logs_and_bookmarks_with_the_stacks_key(stack):
    security = stack.properties("GlueSecurityConfiguration")
    encryption = security["EncryptionConfiguration"]
    key = stack.arn("DataKey")

    assert stack.properties("StarSchemaJob")["SecurityConfiguration"] == security["Name"]
    assert encryption["S3Encryptions"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": key}]
    assert encryption["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": key}
    assert encryption["JobBookmarksEncryption"] == {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": key}


def test_default_names_are_the_platforms_defaults(stack):
    from financial_assets.settings import DEFAULT_ATHENA_WORKGROUP, DEFAULT_GLUE_DATABASE

    assert stack.properties("GlueDatabase")["DatabaseInput"]["Name"] == DEFAULT_GLUE_DATABASE == "financial_data_db"
    assert stack.properties("AthenaWorkGroup")["Name"] == DEFAULT_ATHENA_WORKGROUP
    assert stack.properties("StarSchemaJob")["Name"] == "transform-to-star-schema"


def test_the_glue_databases_are_the_deployments_namespaces_located_at_their_zones(stack):
    from financial_assets.settings import Settings

    catalog = Settings.from_env(deployment_environment(stack)).catalog()
    bucket = stack.ref("LakehouseBucket")
    databases = {
        stack.properties(name)["DatabaseInput"]["Name"]: stack.properties(name)["DatabaseInput"]["LocationUri"]
        for name in stack.of_type("AWS::Glue::Database")
    }

    assert databases == {catalog.raw_namespace: f"s3://{bucket}/raw", catalog.analytics_namespace: f"s3://{bucket}/analytics"}
    assert catalog.warehouse == f"s3://{bucket}"


def test_the_glue_databases_survive_a_deleted_stack_like_the_data_they_register(template):
    for name, spec in template["Resources"].items():
        if spec["Type"] in ("AWS::Glue::Database", "AWS::S3::Bucket"):
            assert (spec.get("DeletionPolicy"), spec.get("UpdateReplacePolicy")) == ("Retain", "Retain"), name


# ------------------------------------------------------------------ IAM: the Glue job

GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"


def built_tables() -> tuple[str, ...]:
    """The analytics tables the star-schema build writes: the star tables and the builds record."""
    from financial_assets.lakehouse.tables import BUILDS, STAR_TABLES

    return (*STAR_TABLES, BUILDS)


def table_files(stack: Stack, zone: str, table: str) -> str:
    """The key prefix of an Iceberg table's files: its Glue database's location, then its name."""
    database = {"raw": "GlueRawDatabase", "analytics": "GlueDatabase"}[zone]
    location = stack.properties(database)["DatabaseInput"]["LocationUri"]
    prefix = location.removeprefix(f"s3://{stack.ref('LakehouseBucket')}/")
    return f"{prefix}/{table}/"


def test_glue_role_reads_the_raw_zone_the_star_schema_its_code_and_pipes(stack, glue_role):
    bucket = stack.arn("LakehouseBucket")

    assert object_resources(glue_role, "s3:GetObject", bucket) == {"raw/*", "analytics/*", "glue/*", "dagster-pipes/*"}
    for key in ("raw/transactions/metadata/00003-a.metadata.json", "raw/transactions/data/00000-0-a.parquet",
                "analytics/star_schema_publications/metadata/00001-b.metadata.json",
                "glue/scripts/transform-to-star-schema.py", "glue/packages/financial_assets-0123.zip"):
        assert allows(glue_role, "s3:GetObject", stack.object_arn(key)), key
    for key in ("athena-results/q.csv", "other/x"):
        assert not allows(glue_role, "s3:GetObject", stack.object_arn(key)), key


def test_glue_role_writes_only_the_files_of_the_tables_the_build_writes_and_pipes_messages(stack, glue_role):
    bucket = stack.arn("LakehouseBucket")
    tables = {f"{table_files(stack, 'analytics', table)}*" for table in built_tables()}

    assert object_resources(glue_role, "s3:PutObject", bucket) == tables | {"dagster-pipes/*"}
    assert object_resources(glue_role, "s3:DeleteObject", bucket) == tables
    assert allows(glue_role, "s3:PutObject", stack.object_arn("analytics/fact_transactions/data/date_key=20261129/00000-1-a.parquet"))
    for key in ("raw/customers/data/00000-0-a.parquet", "raw/customers/metadata/00001-a.metadata.json",
                "analytics/star_schema_publications/metadata/00002-a.metadata.json",
                "glue/scripts/transform-to-star-schema.py", "athena-results/q.csv"):
        assert not allows(glue_role, "s3:PutObject", stack.object_arn(key)), key
        assert not allows(glue_role, "s3:DeleteObject", stack.object_arn(key)), key


def test_glue_role_reads_both_zones_in_the_glue_catalog(stack, glue_role):
    for database in (stack.ref("GlueRawDatabase"), stack.ref("GlueDatabase")):
        assert allows(glue_role, "glue:GetDatabase", f"{GLUE}:database/{database}"), database
        assert allows(glue_role, "glue:GetTable", f"{GLUE}:table/{database}/customers"), database
    assert not allows(glue_role, "glue:GetTable", f"{GLUE}:table/other_db/customers")


def test_glue_role_commits_only_to_the_tables_the_build_writes(stack, glue_role):
    analytics, raw = stack.ref("GlueDatabase"), stack.ref("GlueRawDatabase")

    for table in built_tables():
        for action in ("glue:CreateTable", "glue:UpdateTable"):
            assert allows(glue_role, action, f"{GLUE}:table/{analytics}/{table}"), (action, table)
    for table in (f"{analytics}/star_schema_publications", f"{raw}/transactions", "other_db/fact_transactions"):
        assert not allows(glue_role, "glue:UpdateTable", f"{GLUE}:table/{table}"), table
    for action in ("glue:DeleteTable", "glue:DeleteDatabase", "glue:UpdateDatabase"):
        assert not allows(glue_role, action, f"{GLUE}:database/{analytics}"), action


def test_only_the_orchestrator_records_publications(stack, glue_role, orchestrator):
    from financial_assets.lakehouse.tables import PUBLICATIONS

    table = f"{GLUE}:table/{stack.ref('GlueDatabase')}/{PUBLICATIONS}"
    metadata = stack.object_arn(f"{table_files(stack, 'analytics', PUBLICATIONS)}metadata/00002-a.metadata.json")

    assert not allows(glue_role, "glue:UpdateTable", table)
    assert not allows(glue_role, "s3:PutObject", metadata)
    assert allows(orchestrator, "glue:UpdateTable", table)
    assert allows(orchestrator, "s3:PutObject", metadata)


def test_roles_create_no_glue_database_but_the_stacks_two(stack, glue_role, orchestrator):
    ours = {stack.ref("GlueRawDatabase"), stack.ref("GlueDatabase")}

    for role in (glue_role, orchestrator):
        for database in ours:
            assert allows(role, "glue:CreateDatabase", f"{GLUE}:database/{database}"), database
        assert not allows(role, "glue:CreateDatabase", f"{GLUE}:database/other_db")


def test_glue_role_reads_only_the_pii_key_secret(stack, glue_role):
    secret_actions = {a for s in glue_role for a in s["Action"] if a.startswith("secretsmanager:")}

    assert secret_actions == {"secretsmanager:GetSecretValue"}
    assert allows(glue_role, "secretsmanager:GetSecretValue", stack.ref("PiiKeySecret"))
    assert not allows(glue_role, "secretsmanager:GetSecretValue", stack.ref("SourcesSecret"))


def test_glue_role_writes_only_its_own_log_groups(stack, glue_role):
    role, security = stack.ref("GlueJobRole"), stack.ref("GlueSecurityConfiguration")
    groups = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"

    assert allows(glue_role, "logs:PutLogEvents", f"{groups}/aws-glue/jobs/{security}-role/{role}/output:log-stream:jr_1")
    assert allows(glue_role, "logs:AssociateKmsKey", f"{groups}/aws-glue/jobs/{security}-role/{role}/error")
    assert not allows(glue_role, "logs:PutLogEvents", f"{groups}/aws-glue/jobs/output:log-stream:jr_1")
    assert not allows(glue_role, "logs:PutLogEvents", f"{groups}/other-team/app:log-stream:x")


# ------------------------------------------------------------------ IAM: every policy


def test_no_statement_allows_every_action(stack):
    for statement in all_policy_statements(stack):
        if statement["Effect"] == "Allow":
            assert "*" not in statement["Action"], statement


def test_identity_policies_name_every_action_explicitly(stack):
    """No `*`, no `s3:*`, no `s3:Get*`: each permission the roles have is spelt out."""
    for statement in identity_statements(stack):
        assert not any("*" in action for action in statement["Action"]), statement


def test_no_identity_policy_grants_every_object_of_a_bucket(stack):
    whole_buckets = {"arn:aws:s3:::*", "arn:aws:s3:::*/*"} | {f"{stack.arn(b)}/*" for b in stack.of_type("AWS::S3::Bucket")}
    for statement in identity_statements(stack):
        assert whole_buckets.isdisjoint(statement["Resource"]), statement


def test_wildcard_resources_only_where_iam_has_no_resource_level_permissions(stack):
    for statement in identity_statements(stack):
        if "*" in statement["Resource"]:
            assert statement["Action"] == ["cloudwatch:PutMetricData"], statement
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Glue"}}, statement


def test_every_kms_permission_is_on_the_stacks_key(stack):
    for statement in identity_statements(stack):
        if any(a.startswith("kms:") for a in statement["Action"]):
            assert statement["Resource"] == [stack.arn("DataKey")], statement


# ------------------------------------------------------------------ IAM: the Dagster orchestrator


def test_orchestrator_runs_only_the_star_schema_job(stack, orchestrator):
    job = f"arn:aws:glue:{REGION}:{ACCOUNT}:job/transform-to-star-schema"

    for action in ("glue:GetJob", "glue:StartJobRun", "glue:GetJobRun", "glue:BatchStopJobRun"):
        assert allows(orchestrator, action, job), action
        assert not allows(orchestrator, action, f"arn:aws:glue:{REGION}:{ACCOUNT}:job/someone-elses-job"), action
    assert not allows(orchestrator, "glue:UpdateJob", job)


def test_orchestrator_commits_tables_only_in_the_lakehouse_databases(stack, orchestrator):
    for database in (stack.ref("GlueRawDatabase"), stack.ref("GlueDatabase")):
        for action in ("glue:CreateTable", "glue:UpdateTable", "glue:GetTable"):
            assert allows(orchestrator, action, f"{GLUE}:table/{database}/customers"), (action, database)
    for action in ("glue:CreateTable", "glue:UpdateTable", "glue:GetTable"):
        assert not allows(orchestrator, action, f"{GLUE}:table/other_db/dim_customers"), action
    for action in ("glue:DeleteTable", "glue:DeleteDatabase", "glue:UpdateDatabase"):
        assert not allows(orchestrator, action, f"{GLUE}:database/{stack.ref('GlueDatabase')}"), action


def test_orchestrator_queries_only_through_the_workgroup(stack, orchestrator):
    workgroups = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup"

    for action in ("athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults"):
        assert allows(orchestrator, action, f"{workgroups}/financial-assets"), action
        assert not allows(orchestrator, action, f"{workgroups}/primary"), action


def test_orchestrator_can_do_what_extraction_the_glue_engine_publishing_and_maintenance_do(stack, orchestrator):
    """The S3 calls the code makes on AWS: raw loads, code upload, Pipes, publication records,
    snapshot expiry's deletes in both zones, Athena results."""
    calls = [
        ("s3:PutObject", "raw/customers/data/00000-0-a.parquet"),
        ("s3:PutObject", "raw/customers/metadata/00002-a.metadata.json"),
        ("s3:GetObject", "raw/transactions/metadata/snap-1-a.avro"),
        ("s3:DeleteObject", "raw/customers/data/00000-0-old.parquet"),
        ("s3:PutObject", "glue/scripts/transform-to-star-schema.py"),
        ("s3:PutObject", "glue/packages/financial_assets-0123456789abcdef.zip"),
        ("s3:PutObject", "dagster-pipes/context-1.json"),
        ("s3:DeleteObject", "dagster-pipes/context-1.json"),
        ("s3:GetObject", "dagster-pipes/messages-1/1.json"),
        ("s3:GetObject", "analytics/star_schema_builds/metadata/00004-a.metadata.json"),
        ("s3:PutObject", "analytics/star_schema_publications/data/00000-0-a.parquet"),
        ("s3:DeleteObject", "analytics/fact_transactions/data/date_key=20261101/00000-1-old.parquet"),
        ("s3:GetObject", "athena-results/0000-1111.csv"),
    ]
    for action, key in calls:
        assert allows(orchestrator, action, stack.object_arn(key)), (action, key)
    assert allows(orchestrator, "s3:ListBucket", stack.arn("LakehouseBucket"))
    assert not allows(orchestrator, "s3:PutObject", stack.object_arn("unexpected/x"))


def test_orchestrator_reads_the_sources_secret_but_not_the_pii_key_by_default(stack, orchestrator):
    assert allows(orchestrator, "secretsmanager:GetSecretValue", stack.ref("SourcesSecret"))
    assert not allows(orchestrator, "secretsmanager:GetSecretValue", stack.ref("PiiKeySecret"))


def test_orchestrator_reads_the_pii_key_when_it_builds_with_local_spark(template):
    local_builds = Stack(template, OrchestratorCanReadPiiKey="true")
    orchestrator = role_statements(local_builds, "OrchestratorRole")

    assert allows(orchestrator, "secretsmanager:GetSecretValue", local_builds.ref("PiiKeySecret"))


def test_orchestrator_role_is_assumable_only_by_the_configured_principal_and_ec2(template):
    def trusted(stack: Stack) -> list:
        return [s["Principal"] for s in statements(stack.properties("OrchestratorRole")["AssumeRolePolicyDocument"])]

    on_ec2, elsewhere = Stack(template), Stack(template, OrchestratorOnEc2="false")

    assert trusted(on_ec2) == [{"AWS": PRINCIPAL}, {"Service": "ec2.amazonaws.com"}]
    assert "OrchestratorInstanceProfile" in on_ec2.resources
    assert trusted(elsewhere) == [{"AWS": PRINCIPAL}]
    assert "OrchestratorInstanceProfile" not in elsewhere.resources


# ------------------------------------------------------------------ secrets


def test_secrets_hold_no_literal_values(stack):
    for secret in stack.of_type("AWS::SecretsManager::Secret"):
        properties = stack.properties(secret)
        assert "SecretString" not in properties, secret
        generated = properties["GenerateSecretString"]
        assert generated["PasswordLength"] >= 32, secret
        if "SecretStringTemplate" in generated:
            for name, url in json.loads(generated["SecretStringTemplate"]).items():
                parts = urlsplit(url)
                assert parts.username is None and parts.password is None, (secret, name)
                assert parts.hostname.endswith(".invalid"), (secret, name)  # a placeholder that cannot connect


def test_source_secret_has_the_keys_the_platform_reads(stack):
    from financial_assets.sources.secrets import SECRET_KEYS

    generated = stack.properties("SourcesSecret")["GenerateSecretString"]

    assert set(json.loads(generated["SecretStringTemplate"])) == set(SECRET_KEYS)


def test_secrets_are_encrypted_with_the_stacks_key(stack):
    for secret in stack.of_type("AWS::SecretsManager::Secret"):
        assert stack.properties(secret)["KmsKeyId"] == stack.arn("DataKey"), secret


# ------------------------------------------------------------------ Athena


def test_athena_workgroup_enforces_encrypted_results_in_the_bucket_and_caps_scans(stack, template):
    configuration = stack.properties("AthenaWorkGroup")["WorkGroupConfiguration"]
    results = configuration["ResultConfiguration"]

    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert results["OutputLocation"] == f"s3://{stack.ref('LakehouseBucket')}/athena-results/"
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_KMS", "KmsKey": stack.arn("DataKey")}
    assert configuration["BytesScannedCutoffPerQuery"] == stack.parameters["AthenaBytesScannedCutoff"]
    assert template["Parameters"]["AthenaBytesScannedCutoff"]["Default"] <= 100 * 2**30


def test_athena_workgroup_runs_engine_version_3_which_reads_iceberg_tables(stack):
    configuration = stack.properties("AthenaWorkGroup")["WorkGroupConfiguration"]

    assert configuration["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}


def test_analysts_read_the_star_schema_but_not_the_raw_zone(stack):
    query = statements(stack.properties("QueryPolicy")["PolicyDocument"])
    analytics, raw = stack.ref("GlueDatabase"), stack.ref("GlueRawDatabase")

    assert allows(query, "glue:GetTable", f"{GLUE}:table/{analytics}/fact_transactions")
    assert allows(query, "s3:GetObject", stack.object_arn("analytics/fact_transactions/metadata/00004-a.metadata.json"))
    assert not allows(query, "glue:GetTable", f"{GLUE}:table/{raw}/customers")
    assert not allows(query, "s3:GetObject", stack.object_arn("raw/customers/data/00000-0-a.parquet"))
    assert not any(a.startswith("glue:") and a.removeprefix("glue:").startswith(("Create", "Update", "Delete"))
                   for s in query for a in s["Action"])


# ------------------------------------------------------------------ outputs: what a deployment sets

DEPLOYMENT_VARIABLES = (
    "FIN_LAKEHOUSE_URI", "FIN_GLUE_JOB_NAME", "FIN_GLUE_STAGING_S3_URI", "FIN_GLUE_PIPES_BUCKET",
    "FIN_GLUE_PII_KEY_SECRET_ID", "FIN_SOURCES_SECRET_ID", "FIN_ATHENA_WORKGROUP", "FIN_GLUE_DATABASE",
)


def deployment_environment(stack: Stack) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in stack.output("DeploymentEnvironment").split(" "))


def test_outputs_name_the_environment_variables_they_fill(template):
    outputs = template["Outputs"]
    descriptions = " ".join(o["Description"] for name, o in outputs.items() if name != "DeploymentEnvironment")

    for variable in DEPLOYMENT_VARIABLES:
        assert variable in descriptions, variable
    for name in ("LakehouseBucketName", "GlueJobName", "AthenaWorkGroupName", "GlueDatabaseName", "GlueRawDatabaseName",
                 "SourcesSecretArn", "PiiKeySecretArn", "GlueJobRoleArn", "OrchestratorRoleArn"):
        assert name in outputs, name


def test_deployment_environment_output_configures_the_aws_deployment(stack):
    from financial_assets.resources import deployment_resources
    from financial_assets.settings import Settings

    environment = deployment_environment(stack)
    settings = Settings.from_env(environment)
    engine = deployment_resources(settings)["star_schema_engine"]

    assert set(DEPLOYMENT_VARIABLES) | {"FIN_DEPLOYMENT", "FIN_STAR_SCHEMA_ENGINE", "AWS_REGION"} == set(environment)
    assert (settings.deployment, settings.star_schema_engine, settings.aws_region) == ("aws", "glue", REGION)
    assert settings.lakehouse_uri == f"s3://{stack.ref('LakehouseBucket')}"
    assert (settings.glue_database, settings.athena_workgroup) == ("financial_data_db", "financial-assets")
    assert (settings.catalog().kind, settings.catalog().warehouse) == ("glue", f"s3://{stack.ref('LakehouseBucket')}")
    assert settings.sources_secret_id == stack.ref("SourcesSecret")
    assert (engine.job_name, engine.pipes_bucket, engine.pii_key_secret_id) == (
        "transform-to-star-schema", stack.ref("LakehouseBucket"), stack.ref("PiiKeySecret"))


def test_glue_role_can_read_what_the_deployment_environment_points_it_at(stack, glue_role):
    from financial_assets.resources.glue import GlueEngine

    environment = deployment_environment(stack)
    staging = environment["FIN_GLUE_STAGING_S3_URI"].removeprefix(f"s3://{stack.ref('LakehouseBucket')}/")
    pipes = GlueEngine.model_fields["pipes_prefix"].default

    assert environment["FIN_GLUE_PIPES_BUCKET"] == stack.ref("LakehouseBucket")
    assert allows(glue_role, "s3:GetObject", stack.object_arn(f"{staging}/financial_assets-0123456789abcdef.zip"))
    assert allows(glue_role, "s3:GetObject", stack.object_arn(f"{pipes}context-1.json"))
    assert allows(glue_role, "s3:PutObject", stack.object_arn(f"{pipes}messages-1/1.json"))


# ------------------------------------------------------------------ cfn-lint and checkov


def iac_tool(name: str) -> Path:
    path = IAC_BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make test` (or `make iac-tools`) to install the IaC tools into .venv-iac")
    return path


def _run(command: list, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """checkov on the template; --skip-download: nothing is fetched (severities are then unknown)."""
    result = _run([iac_tool("checkov"), "-f", TEMPLATE.relative_to(REPO_ROOT), "--framework", "cloudformation",
                   "--skip-download", "--output", "json"])
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not report (exit {result.returncode}):\n{result.stderr[-3000:]}")


def test_cfn_lint_finds_no_errors_or_warnings():
    result = _run([iac_tool("cfn-lint"), "--format", "json", TEMPLATE.relative_to(REPO_ROOT)])
    matches = json.loads(result.stdout or "[]")
    problems = [
        f"{m['Level']} {m['Rule']['Id']} line {m['Location']['Start']['LineNumber']}: {m['Message']}"
        for m in matches if m["Level"] in ("Error", "Warning")
    ]

    assert problems == [], "\n".join(problems)
    assert result.returncode in (0, 8), result.stderr  # 8: informational matches only


def test_checkov_finds_no_failed_checks(checkov_report):
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']} (severity {c.get('severity')})"
        for c in checkov_report["results"]["failed_checks"]
    ]

    assert failed == [], "\n".join(failed)
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 0


def test_checkov_examines_every_unconditional_resource_it_has_checks_for(template, checkov_report):
    checked = {
        c["resource"] for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in checkov_report["results"][kind]
    }
    kinds = {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::SecretsManager::Secret",
             "AWS::Glue::Job", "AWS::Glue::SecurityConfiguration", "AWS::Athena::WorkGroup"}
    expected = {
        f"{spec['Type']}.{name}" for name, spec in template["Resources"].items()
        if spec["Type"] in kinds and "Condition" not in spec
    }

    assert expected - checked == set()


def test_checkov_skips_are_only_the_documented_ones_in_the_template(template, checkov_report):
    documented = {
        (skip["id"], f"{spec['Type']}.{name}")
        for name, spec in template["Resources"].items()
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
        if len(skip.get("comment", "").split()) >= 8  # a reason, not a shrug
    }
    skipped = {(c["check_id"], c["resource"]) for c in checkov_report["results"]["skipped_checks"]}

    assert skipped == documented
