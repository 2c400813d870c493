"""Provisioning of the JetStream layout against a real nats-server."""

from twinstack.common.nats import (
    EVENTS_STREAM,
    REGISTRY_BUCKET,
    STATE_TWINS_BUCKET,
    TELEMETRY_STREAM,
    Backbone,
    JetStreamLayout,
    message_headers,
    provision_jetstream,
)


async def test_layout_is_created_idempotently_and_updated_in_place(backbone: Backbone) -> None:
    js = backbone.js
    telemetry = await js.stream_info(TELEMETRY_STREAM)
    assert telemetry.config.subjects == ["tel.>"]
    assert (await js.stream_info(EVENTS_STREAM)).config.subjects == ["evt.>"]
    for bucket in (REGISTRY_BUCKET, STATE_TWINS_BUCKET):
        await js.key_value(bucket)

    await js.publish("tel.0.pump-1", b"kept", headers=message_headers("m-1"))
    await provision_jetstream(js, JetStreamLayout())
    longer = JetStreamLayout(telemetry_retention_s=30 * 24 * 3600.0)
    await provision_jetstream(js, longer)
    updated = await js.stream_info(TELEMETRY_STREAM)
    assert updated.config.max_age == 30 * 24 * 3600.0
    assert updated.state.messages == 1, "re-provisioning never drops data"


async def test_message_ids_deduplicate_within_the_window(backbone: Backbone) -> None:
    js = backbone.js
    first = await js.publish("tel.1.pump-2", b"a", headers=message_headers("same-id"))
    again = await js.publish("tel.1.pump-2", b"a", headers=message_headers("same-id"))
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
