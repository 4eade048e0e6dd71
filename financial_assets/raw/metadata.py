"""What every raw materialization reports: size, schema, snapshot, high-water mark and a masked preview."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import MetadataValue, TableColumn, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from financial_assets.extract.loads import LoadReport

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


def load_metadata(report: LoadReport, pii: frozenset[str]) -> dict:
    """The materialization's metadata. The snapshot id is text: it is a 64-bit number, beyond
    what a JSON reader such as the UI's keeps exactly."""
    state = report.state
    metadata = {
        "dagster/row_count": MetadataValue.int(report.raw_rows),
        "rows_loaded": MetadataValue.int(report.rows_loaded),
        "load_mode": MetadataValue.text(report.mode),
        "committed": MetadataValue.bool(report.committed),
        "bytes": MetadataValue.int(state.bytes if state else 0),
        "files": MetadataValue.int(state.files if state else 0),
        "snapshot_id": MetadataValue.text(str(report.snapshot_id) if report.snapshot_id is not None else ""),
        "table": MetadataValue.text(report.table),
        "dagster/column_schema": column_schema(report.schema),
        "high_water_mark": MetadataValue.text(str(report.high_water_mark)),
        "previous_high_water_mark": MetadataValue.text(str(report.previous_high_water_mark)),
        "late_rows": MetadataValue.int(report.late_rows),
        "preview": MetadataValue.md(markdown_preview(report.preview, pii)),
        "new_columns": MetadataValue.json(report.new_columns),
    }
    if state is not None:
        metadata["location"] = MetadataValue.path(state.location)
    if report.quarantine_state is not None or report.quarantined:
        metadata["quarantined_rows"] = MetadataValue.int(report.quarantined)
        metadata["quarantine_total_rows"] = MetadataValue.int(report.quarantined_rows)
    return metadata
