from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from financial_assets.lakehouse.storage import LakehouseStorage
from financial_assets.lakehouse.tables import ManifestTable


class LakehouseResource(ConfigurableResource):
    """The lakehouse: a local folder on a laptop, an S3 prefix on AWS (FIN_LAKEHOUSE_URI).

    Zones are folders below it: `raw/` for extracted source tables, `analytics/` for the star
    schema. Each table commits through a manifest, so readers never see a partial write.
    """

    uri: str = Field(description="A local path, file:// URI or s3://bucket/prefix.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint other than AWS's (MinIO, moto); FIN_S3_ENDPOINT_URL."
    )

    def storage(self) -> LakehouseStorage:
        return LakehouseStorage(self.uri, s3_endpoint_url=self.s3_endpoint_url)

    def raw_table(self, name: str) -> ManifestTable:
        return ManifestTable(self.storage(), f"raw/{name}")
