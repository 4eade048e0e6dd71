from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.lakehouse.catalog import LakehouseCatalog
from financial_assets.settings import DEFAULT_CATALOG_NAME, warehouse_uri


class LakehouseResource(ConfigurableResource):
    """The lakehouse: Apache Iceberg tables in one catalog, their files in a warehouse.

    Locally the catalog is Iceberg's SQL catalog in the local PostgreSQL and the warehouse a
    folder (FIN_LAKEHOUSE_URI); on AWS the Glue Data Catalog and an S3 prefix. Namespaces are the
    zones: `raw` for extracted source tables, `analytics` for the star schema.
    """

    uri: str = Field(description="The warehouse: a local path, file:// URI or s3://bucket/prefix.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint other than AWS's (MinIO, moto); FIN_S3_ENDPOINT_URL."
    )
    catalog_url: str | None = Field(
        default=None,
        description="Iceberg SQL catalog database (postgresql://...), or unset for the AWS Glue Data Catalog.",
    )
    catalog_name: str = Field(default=DEFAULT_CATALOG_NAME, description="The catalog's name (Spark's too).")
    raw_namespace: str = Field(default="raw", description="Namespace (Glue database) of the raw zone.")
    analytics_namespace: str = Field(default="analytics", description="Namespace of the star schema.")
    region: str | None = Field(default=None, description="AWS region of S3 and Glue.")

    def catalog(self) -> LakehouseCatalog:
        return LakehouseCatalog(
            warehouse=warehouse_uri(self.uri),
            sql_url=self.catalog_url,
            name=self.catalog_name,
            raw_namespace=self.raw_namespace,
            analytics_namespace=self.analytics_namespace,
            s3_endpoint_url=self.s3_endpoint_url,
            region=self.region,
        )

    @classmethod
    def for_catalog(cls, catalog: LakehouseCatalog) -> LakehouseResource:
        return cls(
            uri=catalog.warehouse,
            s3_endpoint_url=catalog.s3_endpoint_url,
            catalog_url=catalog.sql_url,
            catalog_name=catalog.name,
            raw_namespace=catalog.raw_namespace,
            analytics_namespace=catalog.analytics_namespace,
            region=catalog.region,
        )
