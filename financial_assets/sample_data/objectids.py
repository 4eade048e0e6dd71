"""Reproducible ObjectIds.

An ObjectId is 12 bytes: a 4-byte big-endian Unix time, then 8 bytes that the server's drivers
fill with a random machine/process value and a counter. Here the 8 bytes are a big-endian
counter, the event's ordinal in the seed. So the same seed gives the same ``_id``s, they sort by
the transaction's time and then by insertion order, and documents appended later (with later
timestamps) get larger ``_id``s.
"""

from __future__ import annotations

import numpy as np
from bson import ObjectId

_LAYOUT = np.dtype([("time", ">u4"), ("counter", ">u8")])


def object_ids(timestamps: np.ndarray, first_counter: int) -> list[ObjectId]:
    """One ObjectId per epoch-second timestamp, with counters first_counter, first_counter + 1, ..."""
    count = len(timestamps)
    raw = np.empty(count, dtype=_LAYOUT)
    raw["time"] = np.asarray(timestamps, dtype=np.int64)
    raw["counter"] = np.arange(first_counter, first_counter + count, dtype=np.uint64)
    data = raw.tobytes()
    return [ObjectId(data[offset : offset + 12]) for offset in range(0, 12 * count, 12)]
