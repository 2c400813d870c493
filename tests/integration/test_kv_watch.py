"""Scans and watches of KV buckets that see every stored key, against a real nats-server.

nats.py's own end-of-stored-values marker comes early about one scan in ten on this kind of
machine (nats-io/nats.py#842); these tests repeat the scan often enough to catch that.
"""

import asyncio

from nats.js.kv import KeyValue

from twinstack.common.kv_watch import KvWatch, scan
from twinstack.common.nats import Backbone

STORED_KEYS = 300
SCANS = 60


async def filled_bucket(backbone: Backbone, name: str) -> KeyValue:
    bucket = await backbone.js.create_key_value(bucket=name)
    for index in range(STORED_KEYS):
        await bucket.put(f"item.{index}", b"x" * 200)
    await bucket.put("other.0", b"not matched")
    await bucket.delete("item.0")
    return bucket


async def test_every_scan_sees_every_stored_key(backbone: Backbone) -> None:
    bucket = await filled_bucket(backbone, "scanned")
    expected = {f"item.{index}" for index in range(1, STORED_KEYS)}
    for _ in range(SCANS):
        assert {entry.key for entry in await scan(bucket, "item.*")} == expected
    assert {e.key for e in await scan(bucket, "item.*", meta_only=True)} == expected
    assert await scan(bucket, "absent.*") == []


async def test_a_watch_marks_the_stored_values_then_follows_changes(backbone: Backbone) -> None:
    bucket = await filled_bucket(backbone, "watched")
    for _ in range(SCANS // 3):
        watch = await KvWatch.open(bucket, "item.*")
        before_marker: set[str] = set()
        entries = aiter(watch)
        while (entry := await anext(entries)) is not None:
            before_marker.add(entry.key)
        assert before_marker >= {f"item.{index}" for index in range(1, STORED_KEYS)}
        await bucket.put("item.new", b"later")
        change = await asyncio.wait_for(anext(entries), timeout=10)
        assert change is not None
        assert change.key == "item.new"
        await watch.stop()
        await bucket.delete("item.new")


async def test_a_watch_of_nothing_is_loaded_at_once(backbone: Backbone) -> None:
    bucket = await backbone.js.create_key_value(bucket="empty")
    watch = await KvWatch.open(bucket, ">")
    try:
        assert await asyncio.wait_for(anext(aiter(watch)), timeout=10) is None
    finally:
        await watch.stop()


async def test_scans_and_stopped_watches_leave_no_consumer_behind(backbone: Backbone) -> None:
    # nats.py leaves a stopped watch's consumer to expire after five minutes; a bucket scanned
    # per request ran into the server's consumer limit (1,000) within minutes.
    bucket = await filled_bucket(backbone, "tidy")
    for _ in range(SCANS):
        await scan(bucket, "item.*")
    watch = await KvWatch.open(bucket, "item.*")
    await watch.stop()
    assert (await backbone.js.stream_info("KV_tidy")).state.consumer_count == 0


async def test_a_scan_sees_every_key_while_another_is_rewritten(backbone: Backbone) -> None:
    # As the device directory is scanned while it rewrites the devices that just sent.
    bucket = await backbone.js.create_key_value(bucket="busy")
    await bucket.put("node", b"written once")
    writing = asyncio.Event()
    done = asyncio.Event()

    async def rewrite() -> int:
        writes = 0
        while not done.is_set():
            await bucket.put("device", str(writes).encode())
            writes += 1
            writing.set()
        return writes

    writer = asyncio.create_task(rewrite())
    await writing.wait()
    try:
        for _ in range(SCANS * 3):
            assert {entry.key for entry in await scan(bucket)} == {"node", "device"}
    finally:
        done.set()
    assert await writer > SCANS  # the writes did overlap the scans
