"""What every raw materialization reports: size, schema, high-water mark and a masked preview."""

from __future__ import annotations

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

from financial_assets.extract.loads import LoadReport
from financial_assets.lakehouse.tables import ManifestTable

MASK = "•••"


def column_schema(schema: pa.Schema) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=f.name, type=str(f.type)) for f in schema])


def markdown_preview(table: pa.Table, masked: frozenset[str]) -> str:
    """A Markdown table of ``table``'s rows with personal data masked."""
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.to_pylist():
        cells = []
        for name in names:
            value = row[name]
            text = MASK if name in masked and value is not None else str(value)
            cells.append(text.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_metadata(report: LoadReport, table: ManifestTable, pii: frozenset[str]) -> dict:
    manifest = report.manifest
    metadata = {
        "dagster/row_count": MetadataValue.int(manifest.row_count if manifest else 0),
        "rows_loaded": MetadataValue.int(report.rows_loaded),
        "load_mode": MetadataValue.text(report.mode),
        "bytes": MetadataValue.int(manifest.bytes if manifest else 0),
        "files": MetadataValue.int(len(manifest.files) if manifest else 0),
        "manifest_version": MetadataValue.int(manifest.version if manifest else 0),
        "dagster/column_schema": column_schema(report.schema),
        "high_water_mark": MetadataValue.text(str(report.high_water_mark)),
        "previous_high_water_mark": MetadataValue.text(str(report.previous_high_water_mark)),
        "location": MetadataValue.path(table.storage.uri_of(table.relpath)),
        "preview": MetadataValue.md(markdown_preview(report.preview, pii)),
        "new_columns": MetadataValue.json(report.new_columns),
    }
    if report.quarantine_manifest is not None or report.quarantined:
        quarantine = report.quarantine_manifest
        metadata["quarantined_rows"] = MetadataValue.int(report.quarantined)
        metadata["quarantine_total_rows"] = MetadataValue.int(quarantine.row_count if quarantine else 0)
    return metadata
