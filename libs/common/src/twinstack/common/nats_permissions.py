"""What each service's NATS user may publish and read, and the nats-server configuration that
enforces it.

Every service connects as its own user. A user may not write another service's KV buckets,
object store, telemetry or events, nor read the buckets and streams it has no use for; nobody
deletes or purges a stream. The rules are written as deny lists over "allow everything": the
JetStream API a client library uses (consumer creation, flow control, acknowledgements,
inboxes) is broad and changes between library versions, while what must not happen is short
and stable. Stream and bucket creation stays open to every service, because each one
provisions the whole layout idempotently at start (a service can therefore change another's
stream settings, but not its data).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twinstack.common.device_topics import (
    COMMANDS,
    DESIRED,
    ERRORS,
    SPARKPLUG_SUBJECT_ROOT,
    device_permissions,
)
from twinstack.common.nats import (
    ACCESS_BUCKET,
    ALERT_RULES_BUCKET,
    DEVICE_GATEWAY_BUCKET,
    DEVICES_BUCKET,
    DEVICES_STREAM,
    EVENTS_STREAM,
    REGISTRY_BUCKET,
    STATE_OWNERSHIP_BUCKET,
    STATE_TWINS_BUCKET,
    SWEEP_CHUNKS_BUCKET,
    SWEEP_DRIVERS_BUCKET,
    SWEEP_RESULTS_STORE,
    SWEEPS_BUCKET,
    TELEMETRY_STREAM,
)

SERVICES = ("registry", "ingestion", "state", "simulation")

# Who writes what. A KV bucket is written by publishing to $KV.<bucket>.<key>, an object store
# by $O.<bucket>.>, telemetry by tel.<partition>.<twin>, events by evt.<area>.>.
_WRITES: Mapping[str, Sequence[str]] = {
    "registry": (
        f"$KV.{REGISTRY_BUCKET}.>",
        f"$KV.{ACCESS_BUCKET}.>",
        "evt.registry.>",
        "evt.access.>",
    ),
    "ingestion": (
        "tel.>",
        "evt.ingestion.>",
        f"$KV.{DEVICE_GATEWAY_BUCKET}.>",
        f"$KV.{DEVICES_BUCKET}.>",
        # To devices: rejections, desired values, commands, Sparkplug commands.
        *(f"{prefix}twins.*.{kind}" for prefix in ("", "tenants.*.") for kind in (ERRORS, DESIRED)),
        *(f"{prefix}twins.*.{COMMANDS}.*" for prefix in ("", "tenants.*.")),
        f"{SPARKPLUG_SUBJECT_ROOT}.*.NCMD.*",
        f"{SPARKPLUG_SUBJECT_ROOT}.*.DCMD.*.*",
    ),
    "state": (
        f"$KV.{STATE_TWINS_BUCKET}.>",
        f"$KV.{ALERT_RULES_BUCKET}.>",
        f"$KV.{STATE_OWNERSHIP_BUCKET}.>",
        "evt.state.>",
        "evt.alert.>",
    ),
    "simulation": (
        f"$KV.{SWEEPS_BUCKET}.>",
        f"$KV.{SWEEP_CHUNKS_BUCKET}.>",
        f"$KV.{SWEEP_DRIVERS_BUCKET}.>",
        f"$O.{SWEEP_RESULTS_STORE}.>",
        "evt.simulation.>",
        "evt.forecast.>",
    ),
}
# What each service reads besides what it writes (every service reads the registry's models
# and the access bucket, and audits into evt.audit).
_READS: Mapping[str, Sequence[str]] = {
    "registry": (),
    "ingestion": (f"KV_{REGISTRY_BUCKET}", TELEMETRY_STREAM, DEVICES_STREAM),
    "state": (f"KV_{REGISTRY_BUCKET}", TELEMETRY_STREAM),
    "simulation": (f"KV_{REGISTRY_BUCKET}", f"KV_{STATE_TWINS_BUCKET}"),
}
_OWNED_STREAMS: Mapping[str, Sequence[str]] = {
    "registry": (f"KV_{REGISTRY_BUCKET}", f"KV_{ACCESS_BUCKET}"),
    "ingestion": (
        TELEMETRY_STREAM,
        DEVICES_STREAM,
        f"KV_{DEVICE_GATEWAY_BUCKET}",
        f"KV_{DEVICES_BUCKET}",
    ),
    "state": (
        f"KV_{STATE_TWINS_BUCKET}",
        f"KV_{ALERT_RULES_BUCKET}",
        f"KV_{STATE_OWNERSHIP_BUCKET}",
    ),
    "simulation": (
        f"KV_{SWEEPS_BUCKET}",
        f"KV_{SWEEP_CHUNKS_BUCKET}",
        f"KV_{SWEEP_DRIVERS_BUCKET}",
        f"OBJ_{SWEEP_RESULTS_STORE}",
    ),
}
_SHARED_STREAMS = (f"KV_{ACCESS_BUCKET}", EVENTS_STREAM)


def _stream_reads(stream: str) -> list[str]:
    """The JetStream API subjects that read a stream's messages."""
    return [
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
    ]


def permissions(service: str) -> dict[str, dict[str, list[str]]]:
    """The nats-server permissions of a service's user."""
    writes = set(_WRITES[service]) | {"evt.audit.>"}
    foreign_writes = sorted({subject for other in SERVICES for subject in _WRITES[other]} - writes)
    readable = set(_OWNED_STREAMS[service]) | set(_READS[service]) | set(_SHARED_STREAMS)
    every_stream = {s for streams in _OWNED_STREAMS.values() for s in streams}
    foreign_reads = [
        subject for stream in sorted(every_stream - readable) for subject in _stream_reads(stream)
    ]
    return {
        "publish": {
            "allow": [">"],
            "deny": [
                *foreign_writes,
                *foreign_reads,
                "$JS.API.STREAM.DELETE.>",
                "$JS.API.STREAM.PURGE.>",
            ],
        },
        # Telemetry reaches its consumers through JetStream, never as plain subscriptions.
        "subscribe": {"allow": [">"], "deny": ["tel.>"]},
    }


@dataclass(frozen=True)
class DeviceUser:
    """A device's NATS user (its MQTT user name and password), allowed the topics of its twins
    only (:func:`twinstack.common.device_topics.device_permissions`).

    Attributes:
        name: The user name.
        password: Its password.
        tenant: The tenant of its twins.
        twin_ids: Its twins, as the tenant names them (None: every twin of the tenant).
        sparkplug: Whether it is a Sparkplug B edge node (the Sparkplug namespace is open to it).
    """

    name: str
    password: str = field(repr=False)
    tenant: str
    twin_ids: tuple[str, ...] | None
    sparkplug: bool = False


def authorization_block(
    passwords: Mapping[str, str],
    admin_password: str,
    devices: Sequence[DeviceUser] = (),
) -> str:
    """nats-server configuration: a user per service with its permissions, an admin user (for
    operators' tools) with every permission, and a user per device."""
    users = [{"user": "admin", "password": admin_password}] + [
        {"user": service, "password": passwords[service], "permissions": permissions(service)}
        for service in SERVICES
    ]
    users += [
        {
            "user": device.name,
            "password": device.password,
            "permissions": device_permissions(
                device.tenant, device.twin_ids, sparkplug=device.sparkplug
            ),
        }
        for device in devices
    ]
    # JSON is valid nats-server configuration syntax.
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"


def password_variable(user: str) -> str:
    """The environment variable a Kubernetes nats-server reads a user's password from."""
    return f"NATS_{user.upper()}_PASSWORD"


def kubernetes_authorization_block() -> str:
    """The same configuration with each password read from the server's environment (the
    ``twinstack-nats-auth`` Secret), as ``deploy/k8s/base/nats-auth.conf`` holds it."""
    marker = "@@"
    text = authorization_block(
        {service: f"{marker}{password_variable(service)}{marker}" for service in SERVICES},
        f"{marker}{password_variable('admin')}{marker}",
    )
    # An unquoted $NAME is an environment variable reference in nats-server configuration.
    text = text.replace(f'"{marker}', "$").replace(f'{marker}"', "")
    return (
        "# Generated from twinstack.common.nats_permissions by tools/nats_auth.py: do not edit.\n"
        + text
    )
