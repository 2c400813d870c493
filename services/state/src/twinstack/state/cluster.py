"""The cluster as a state replica sees it, for operators (``twinstack status``): the NATS
servers, each stream's leader and replicas, and the owners of the telemetry partitions."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2
from twinstack.common.kv_watch import scan
from twinstack.common.nats import JetStreamLayout
from twinstack.state.ownership import MEMBER_KEY_PREFIX, PARTITION_KEY_PREFIX


def layout_streams(layout: JetStreamLayout) -> list[str]:
    """Every stream of the layout, KV buckets and object stores included."""
    return [
        *(str(stream.name) for stream in layout.streams()),
        *(f"KV_{bucket.bucket}" for bucket in layout.buckets()),
        *(f"OBJ_{store.bucket}" for store in layout.object_stores()),
    ]


async def stream_status(js: JetStreamContext, name: str) -> state_pb2.StreamStatus | None:
    """One stream's replicas, leader and followers; None if it does not exist."""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return None
    status = state_pb2.StreamStatus(
        name=name,
        replicas=info.config.num_replicas or 1,
        messages=info.state.messages,
        bytes=info.state.bytes,
    )
    if info.cluster is not None:
        status.leader = info.cluster.leader or ""
        status.peers.extend(
            state_pb2.StreamPeer(
                name=peer.name or "",
                current=bool(peer.current),
                offline=bool(peer.offline),
                lag=peer.lag or 0,
            )
            for peer in info.cluster.replicas or []
        )
    return status


async def cluster_status(
    client: NatsClient,
    js: JetStreamContext,
    ownership: KeyValue,
    streams: list[str],
    partitions: int,
) -> state_pb2.GetClusterStatusResponse:
    """The whole picture, read now."""
    response = state_pb2.GetClusterStatusResponse(
        nats_connected_url=client.connected_url.geturl() if client.connected_url else "",
        nats_servers=sorted({server.geturl() for server in client.servers}),
    )
    for name in streams:
        status = await stream_status(js, name)
        if status is not None:
            response.streams.append(status)
    owners = {
        entry.key.removeprefix(PARTITION_KEY_PREFIX): (entry.value or b"").decode()
        for entry in await scan(ownership, f"{PARTITION_KEY_PREFIX}>")
    }
    response.partitions.extend(
        state_pb2.PartitionOwner(partition=p, member=owners.get(str(p), ""))
        for p in range(partitions)
    )
    response.state_members.extend(
        sorted(
            entry.key.removeprefix(MEMBER_KEY_PREFIX)
            for entry in await scan(ownership, f"{MEMBER_KEY_PREFIX}>", meta_only=True)
        )
    )
    return response
