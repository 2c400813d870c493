"""The results store: sweep jobs and result parts, readable by every replica and data team.

Embedded default: a NATS JetStream object store (already in the stack, replicated like every
stream). For a data lake: any URI pyarrow opens (``file://``, ``s3://``, ``gs://``); the parts
of a sweep are then a directory of Parquet files that ``pyarrow.dataset`` reads directly.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from twinstack.common.access import DEFAULT_TENANT
from twinstack.common.nats import SWEEP_RESULTS_STORE

PIECE_BYTES = 1024 * 1024
ROW_GROUP_ROWS = 1_000_000


def sweep_prefix(sweep_id: str, tenant: str) -> str:
    """Where a sweep's job and parts are: ``sweeps/<id>/`` for the default tenant (as before
    tenants), ``tenants/<tenant>/sweeps/<id>/`` for the others, so that a data lake's access
    policies can follow tenants."""
    if tenant == DEFAULT_TENANT:
        return f"sweeps/{sweep_id}/"
    return f"tenants/{tenant}/sweeps/{sweep_id}/"


def job_name(sweep_id: str, tenant: str) -> str:
    return sweep_prefix(sweep_id, tenant) + "job.json"


def part_name(index: int) -> str:
    return f"part-{index:08d}.parquet"


def parquet_bytes(table: pa.Table, provenance_json: str) -> bytes:
    """A Parquet file of ``table`` with the provenance in its metadata."""
    table = table.replace_schema_metadata({"twinstack.provenance": provenance_json})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return buffer.getvalue()


class ResultsStore(Protocol):
    def uri(self, prefix: str) -> str:
        """Where the objects under ``prefix`` are, for people and tools."""

    async def put(self, name: str, data: bytes) -> None:
        """Stores ``data`` under ``name``, replacing what was there."""

    async def get(self, name: str) -> bytes:
        """The object; FileNotFoundError if there is none."""

    def read(self, name: str) -> AsyncIterator[bytes]:
        """The object in pieces of at most PIECE_BYTES; FileNotFoundError if there is none."""


class ObjectStoreResults:
    """Results in a NATS JetStream object store."""

    def __init__(self, js: JetStreamContext, bucket: str = SWEEP_RESULTS_STORE) -> None:
        self._js = js
        self._bucket = bucket

    def uri(self, prefix: str) -> str:
        return f"nats://{self._bucket}/{prefix}"

    async def put(self, name: str, data: bytes) -> None:
        store = await self._js.object_store(self._bucket)
        await store.put(name, data)

    async def get(self, name: str) -> bytes:
        store = await self._js.object_store(self._bucket)
        try:
            result = await store.get(name)
        except (ObjectNotFoundError, NotFoundError) as error:
            raise FileNotFoundError(name) from error
        return bytes(result.data or b"")

    async def read(self, name: str) -> AsyncIterator[bytes]:
        # A part is one chunk's rows (megabytes), so holding one at a time is bounded.
        data = await self.get(name)
        for offset in range(0, len(data), PIECE_BYTES):
            yield data[offset : offset + PIECE_BYTES]


class FileSystemResults:
    """Results under a URI pyarrow opens (``file:///data/sweeps``, ``s3://bucket/path``)."""

    def __init__(self, uri: str) -> None:
        self._uri = uri.rstrip("/")
        self._fs, self._root = pafs.FileSystem.from_uri(self._uri)

    def uri(self, prefix: str) -> str:
        return f"{self._uri}/{prefix}"

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def _put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        # Written aside, then moved: a reader never sees half a part (object stores' puts are
        # atomic already; a local file system's writes are not).
        temporary = path + ".partial"
        with self._fs.open_output_stream(temporary) as stream:
            stream.write(data)
        self._fs.move(temporary, path)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    def _get(self, name: str) -> bytes:
        with self._fs.open_input_stream(self._path(name)) as stream:
            return bytes(stream.read())

    async def get(self, name: str) -> bytes:
        return await asyncio.to_thread(self._get, name)

    async def read(self, name: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._fs.open_input_file, self._path(name))
        try:
            while piece := await asyncio.to_thread(handle.read, PIECE_BYTES):
                yield bytes(piece)
        finally:
            handle.close()


def open_results_store(uri: str, js: JetStreamContext) -> ResultsStore:
    """The store a ``results_uri`` setting names: empty for the embedded NATS object store."""
    if not uri:
        return ObjectStoreResults(js)
    return FileSystemResults(uri)
