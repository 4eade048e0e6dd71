from __future__ import annotations

from dataclasses import asdict, fields

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.lakehouse.catalog import DEFAULT_CATALOG_NAME, LakehouseCatalog


class LakehouseResource(ConfigurableResource):
    """The lakehouse: Apache Iceberg tables in one catalog, their files in a warehouse.

    Locally the catalog is Iceberg's SQL catalog in the local PostgreSQL and the warehouse a
    folder (FIN_LAKEHOUSE_URI); on AWS the Glue Data Catalog and an S3 prefix. Namespaces are the
    zones: `raw` for extracted source tables, `analytics` for the star schema. The fields are
    :class:`LakehouseCatalog`'s, so that the UI shows the catalog as configured.
    """

    warehouse: str = Field(description="The warehouse: file:///path or s3://bucket/prefix (FIN_LAKEHOUSE_URI).")
    sql_url: str | None = Field(
        default=None,
        description="Iceberg SQL catalog database (postgresql://...), or unset for the AWS Glue Data Catalog.",
    )
    name: str = Field(default=DEFAULT_CATALOG_NAME, description="The catalog's name (Spark's too).")
    raw_namespace: str = Field(default="raw", description="Namespace (Glue database) of the raw zone.")
    analytics_namespace: str = Field(default="analytics", description="Namespace of the star schema.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint other than AWS's (MinIO, moto); FIN_S3_ENDPOINT_URL."
    )
    region: str | None = Field(default=None, description="AWS region of S3 and Glue.")

    def catalog(self) -> LakehouseCatalog:
        return LakehouseCatalog(**{f.name: getattr(self, f.name) for f in fields(LakehouseCatalog)})

    @classmethod
    def for_catalog(cls, catalog: LakehouseCatalog) -> LakehouseResource:
        return cls(**asdict(catalog))
