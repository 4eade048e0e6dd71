"""Read `transaction_events` documents against an explicit schema, quarantining what doesn't fit.

The schema is never inferred from the documents. Each document either becomes a row of
``TRANSACTION_EVENTS`` or a quarantine row holding the reason and the document as JSON:

- ``_id`` must be an ObjectId; it becomes ``event_id``, its 24-hex-digit string.
- ``transaction_id`` must be an integer (a string such as "17" is not silently coerced).
- ``device_type`` and ``ip_address`` must be strings.
- ``geolocation`` must be an object with string ``country`` and ``city``; it keeps its shape.
- ``fraud_score`` must be a number (integers are widened to float).
- Every field above is required and must not be null. Values are not judged here (an unknown
  device type or a score above 1 are data-quality questions for the asset checks).
- Fields the schema does not know (``geolocation.x`` for one inside ``geolocation``) are carried
  in ``extra_fields`` as one JSON object, and their names are reported so a new field is noticed.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import bson
import pyarrow as pa
from bson import json_util
from bson.objectid import ObjectId
from pymongo.collection import Collection

from financial_assets.extract.contracts import QUARANTINE_SCHEMA, TRANSACTION_EVENTS

EVENT_SCHEMA = pa.schema(list(TRANSACTION_EVENTS.columns.items()))
_KNOWN_FIELDS = {"_id", "transaction_id", "device_type", "ip_address", "geolocation", "fraud_score"}
_JSON_OPTIONS = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits_exactly(document: dict) -> bool:
    """The common case, checked in one expression: the reference shape and nothing else.

    Only when this is False does a document go through the field-by-field `_problems` (which
    names what is wrong) and the search for unknown fields.
    """
    geolocation = document.get("geolocation")
    score = document.get("fraud_score")
    return (
        len(document) == 6
        and type(document.get("_id")) is ObjectId
        and type(document.get("transaction_id")) is int
        and type(document.get("device_type")) is str
        and type(document.get("ip_address")) is str
        and type(score) is float
        and math.isfinite(score)
        and type(geolocation) is dict
        and len(geolocation) == 2
        and type(geolocation.get("country")) is str
        and type(geolocation.get("city")) is str
    )


def _problems(document: dict) -> list[str]:
    problems = []

    def require(name: str, ok, expected: str) -> None:
        if name not in document:
            problems.append(f"{name}: missing")
        elif document[name] is None:
            problems.append(f"{name}: null")
        elif not ok(document[name]):
            problems.append(f"{name}: expected {expected}, got {type(document[name]).__name__}")

    require("_id", lambda v: isinstance(v, ObjectId), "ObjectId")
    require("transaction_id", _is_int, "integer")
    require("device_type", lambda v: isinstance(v, str), "string")
    require("ip_address", lambda v: isinstance(v, str), "string")
    require(
        "fraud_score",
        lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v),
        "finite number",
    )
    geolocation = document.get("geolocation")
    require("geolocation", lambda v: isinstance(v, dict), "object")
    if isinstance(geolocation, dict):
        for part in ("country", "city"):
            value = geolocation.get(part)
            if not isinstance(value, str):
                got = "missing" if part not in geolocation else type(value).__name__
                problems.append(f"geolocation.{part}: expected string, got {got}")
    return problems


@dataclass
class DocumentBatch:
    """One batch of documents, split into schema rows and quarantined ones."""

    events: pa.RecordBatch
    quarantined: pa.RecordBatch
    # The greatest `_id` in the batch, valid or not: every document read moves the cursor.
    max_object_id: ObjectId | None
    new_fields: set[str] = field(default_factory=set)


def split_documents(documents: list[dict], now: datetime | None = None) -> DocumentBatch:
    """Schema rows and quarantine rows for ``documents``."""
    now = now or datetime.now(timezone.utc)
    columns: dict[str, list] = {name: [] for name in EVENT_SCHEMA.names}
    bad: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names}
    max_id: ObjectId | None = None
    new_fields: set[str] = set()
    for document in documents:
        object_id = document.get("_id")
        if isinstance(object_id, ObjectId) and (max_id is None or object_id > max_id):
            max_id = object_id
        if _fits_exactly(document):
            geolocation = document["geolocation"]
            columns["event_id"].append(str(object_id))
            columns["transaction_id"].append(document["transaction_id"])
            columns["device_type"].append(document["device_type"])
            columns["ip_address"].append(document["ip_address"])
            columns["geolocation"].append(geolocation)
            columns["fraud_score"].append(document["fraud_score"])
            columns["extra_fields"].append(None)
            continue
        problems = _problems(document)
        if problems:
            bad["event_id"].append(str(object_id) if object_id is not None else None)
            bad["reason"].append("; ".join(problems))
            bad["document"].append(json_util.dumps(document, json_options=_JSON_OPTIONS))
            bad["quarantined_at"].append(now)
            continue
        geolocation = document["geolocation"]
        extra = {k: v for k, v in document.items() if k not in _KNOWN_FIELDS}
        extra.update(
            (f"geolocation.{k}", v) for k, v in geolocation.items() if k not in ("country", "city")
        )
        new_fields.update(extra)
        columns["event_id"].append(str(object_id))
        columns["transaction_id"].append(document["transaction_id"])
        columns["device_type"].append(document["device_type"])
        columns["ip_address"].append(document["ip_address"])
        columns["geolocation"].append(
            {"country": geolocation["country"], "city": geolocation["city"]}
        )
        columns["fraud_score"].append(float(document["fraud_score"]))
        columns["extra_fields"].append(
            json_util.dumps(extra, json_options=_JSON_OPTIONS) if extra else None
        )
    return DocumentBatch(
        events=pa.RecordBatch.from_pydict(columns, schema=EVENT_SCHEMA),
        quarantined=pa.RecordBatch.from_pydict(bad, schema=QUARANTINE_SCHEMA),
        max_object_id=max_id,
        new_fields=new_fields,
    )


def stream_documents(
    collection: Collection, *, after: str | None = None, batch_size: int = 10_000
) -> Iterator[DocumentBatch]:
    """The collection's documents (those with ``_id`` greater than ``after``), batch by batch.

    Raw BSON batches are decoded here rather than by the driver, to skip its per-document
    cursor overhead. ObjectIds grow with insertion time, so ``_id > after`` finds documents
    added since the last load, provided the writers' clocks roughly agree.
    """
    query = {"_id": {"$gt": ObjectId(after)}} if after else {}
    for raw in _prefetched(collection.find_raw_batches(query, batch_size=batch_size)):
        documents = bson.decode_all(raw)
        if documents:
            yield split_documents(documents)


def _prefetched(batches: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """The batches, fetched one or two ahead on a thread: the server reads the next batch
    while this process checks the current one."""
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def fetch() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                ahead.put(batch)
            ahead.put(done)
        except BaseException as error:  # handed to the reading thread
            ahead.put(error)

    fetcher = threading.Thread(target=fetch, name="document-prefetch", daemon=True)
    fetcher.start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while fetcher.is_alive():  # unblock a fetcher waiting on a full queue
            try:
                ahead.get(timeout=0.1)
            except queue.Empty:
                pass
