"""Where sweeps are kept: their records, the chunk ledger and the drivers' leases (NATS KV).

Every change of a record is a compare-and-set on its KV revision, so the transitions that
several replicas and drivers may race for (admit a queued sweep, take over a sweep whose driver
was lost, cancel, finish) each have exactly one winner. The record's ``attempt`` fences drivers:
a driver acts only while the record names its attempt, so one that was replaced stops.

The ledger holds one entry per chunk whose results are stored, created (never overwritten)
by the worker that stored them: a chunk computed twice (a retried task, a resumed driver) is
recorded, and so counted, once.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.common.access import DEFAULT_TENANT
from twinstack.common.kv_watch import scan

SWEEP_KEY_PREFIX = "sweeps."
REQUEST_KEY_PREFIX = "requests."


class SweepState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (SweepState.SUCCEEDED, SweepState.FAILED, SweepState.CANCELLED)


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's lifecycle, progress and (once done) summary. Times are Unix seconds."""

    sweep_id: str
    state: SweepState
    submitter: str
    request_id: str
    spec: Mapping[str, Any]  # the SweepSpec message as JSON
    created_at: float
    scenarios_total: int
    chunks_total: int
    provenance_json: str
    results_uri: str
    keep_rows: bool
    started_at: float = 0.0
    ended_at: float = 0.0
    scenarios_done: int = 0
    chunks_done: int = 0
    attempt: int = 0
    launched_at: float = 0.0
    failure_reason: str = ""
    retried_chunks: int = 0
    results_bytes: int = 0
    summary: Mapping[str, Any] | None = None
    # Whose quota the sweep counts against while queued or running (records from before
    # tenants were recorded are the default tenant's, and count no scenario-steps).
    tenant: str = DEFAULT_TENANT
    scenario_steps: int = 0

    def to_bytes(self) -> bytes:
        document = asdict(self)
        document["state"] = self.state.value
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SweepRecord:
        document = json.loads(data)
        document["state"] = SweepState(document["state"])
        return cls(**document)

    def ended(self, state: SweepState, reason: str = "") -> SweepRecord:
        return replace(self, state=state, ended_at=time.time(), failure_reason=reason)


@dataclass(frozen=True)
class Stored:
    record: SweepRecord
    revision: int


def sweep_key(sweep_id: str) -> str:
    return SWEEP_KEY_PREFIX + sweep_id


def request_key(submitter: str, request_id: str) -> str:
    # Hashed: a request id is caller text, and KV keys allow only a few characters.
    digest = hashlib.sha256(f"{submitter}\0{request_id}".encode()).hexdigest()[:48]
    return REQUEST_KEY_PREFIX + digest


class SweepRecords:
    """Sweep records in the ``sweeps`` bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    async def create(self, record: SweepRecord) -> Stored:
        revision = await self.bucket.create(sweep_key(record.sweep_id), record.to_bytes())
        return Stored(record, revision)

    async def claim_request(self, submitter: str, request_id: str, sweep_id: str) -> str | None:
        """Ties a client request id to ``sweep_id``; the sweep it is already tied to, if any."""
        key = request_key(submitter, request_id)
        try:
            await self.bucket.create(key, sweep_id.encode())
        except KeyWrongLastSequenceError:
            existing = (await self.bucket.get(key)).value or b""
            return existing.decode()
        return None

    async def claimed(self, submitter: str, request_id: str) -> str | None:
        """The sweep a client request id is tied to, if any."""
        try:
            entry = await self.bucket.get(request_key(submitter, request_id))
        except KeyNotFoundError:
            return None
        return (entry.value or b"").decode() or None

    async def get(self, sweep_id: str) -> Stored | None:
        try:
            entry = await self.bucket.get(sweep_key(sweep_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return Stored(SweepRecord.from_bytes(entry.value), entry.revision or 0)

    async def replace(self, stored: Stored, record: SweepRecord) -> Stored | None:
        """Writes ``record`` if the stored one is still at its revision; None if it changed."""
        try:
            revision = await self.bucket.update(
                sweep_key(record.sweep_id), record.to_bytes(), last=stored.revision
            )
        except KeyWrongLastSequenceError:
            return None
        return Stored(record, revision)

    async def change(
        self, sweep_id: str, change: Callable[[SweepRecord], SweepRecord | None]
    ) -> Stored | None:
        """Applies ``change`` to the current record until it sticks (re-reading it after a
        concurrent write). None: no record, or ``change`` declined (returned None)."""
        while True:
            stored = await self.get(sweep_id)
            if stored is None:
                return None
            updated = change(stored.record)
            if updated is None:
                return None
            written = await self.replace(stored, updated)
            if written is not None:
                return written

    async def all(self) -> AsyncIterator[Stored]:
        """Every record (a scan of the bucket)."""
        for entry in await scan(self.bucket, SWEEP_KEY_PREFIX + "*"):
            if entry.value:
                yield Stored(SweepRecord.from_bytes(entry.value), entry.revision or 0)


def _ledger_key(sweep_id: str, index: int) -> str:
    return f"{sweep_id}.{index:08d}"


@dataclass(frozen=True)
class LedgerEntry:
    part_bytes: int
    partial: bytes


class ChunkLedger:
    """Which chunks of a sweep are done, each with its partial summary."""

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    async def record(self, sweep_id: str, index: int, entry: LedgerEntry) -> bool:
        """Records a chunk as done; False if it already was (its results are the same)."""
        value = struct.pack("<q", entry.part_bytes) + entry.partial
        try:
            await self.bucket.create(_ledger_key(sweep_id, index), value)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def done(self, sweep_id: str) -> set[int]:
        """Indices of the chunks recorded as done."""
        entries = await scan(self.bucket, f"{sweep_id}.*", meta_only=True)
        return {int(entry.key.rsplit(".", 1)[1]) for entry in entries}

    async def entry(self, sweep_id: str, index: int) -> LedgerEntry:
        value = (await self.bucket.get(_ledger_key(sweep_id, index))).value or b""
        (part_bytes,) = struct.unpack_from("<q", value)
        return LedgerEntry(part_bytes, value[8:])


@dataclass(frozen=True)
class Lease:
    attempt: int
    renewed_at: float
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


class DriverLeases:
    """A running driver renews its lease; one not renewed within the timeout is lost."""

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    async def renew(self, sweep_id: str, attempt: int) -> None:
        lease = Lease(attempt, time.time())
        await self.bucket.put(sweep_id, json.dumps(asdict(lease)).encode())

    async def get(self, sweep_id: str) -> Lease | None:
        with contextlib.suppress(KeyNotFoundError):
            entry = await self.bucket.get(sweep_id)
            if entry.value:
                return Lease(**json.loads(entry.value))
        return None

    async def release(self, sweep_id: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self.bucket.delete(sweep_id)
