"""Where devices publish and listen: the MQTT topics of twins on nats-server's MQTT listener and
the NATS subjects they are.

nats-server turns an MQTT topic into a NATS subject by replacing each ``/`` with ``.`` (and a
``.`` inside a level with ``//``): ``twins/pump-1/telemetry`` is ``twins.pump-1.telemetry``, and
Sparkplug's ``spBv1.0/plant/NDATA/gw`` is ``spBv1//0.plant.NDATA.gw``. Twins of the default
tenant live under ``twins/<twin id>/``; a twin of another tenant under
``tenants/<tenant>/twins/<twin id>/``. A device's NATS permissions allow exactly the topics of
its twins, so the topic a reading came on proves its tenant and twin.

Per twin:

- ``telemetry`` (device → platform): JSON readings.
- ``errors`` (platform → device): why a reading was rejected.
- ``desired`` (platform → device, retained): the twin's desired values.
- ``commands/<command>`` (platform → device): a command request;
  ``responses/<request id>`` (device → platform): its response.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twinstack.common.access import DEFAULT_TENANT

TELEMETRY = "telemetry"
ERRORS = "errors"
DESIRED = "desired"
COMMANDS = "commands"
RESPONSES = "responses"

SPARKPLUG_NAMESPACE = "spBv1.0"
# The namespace as a subject token: nats-server writes the '.' inside an MQTT level as '//'.
SPARKPLUG_SUBJECT_ROOT = "spBv1//0"

# What Sparkplug B edge nodes publish: spBv1.0/<group>/<type>/<edge node>[/<device>].
SPARKPLUG_NODE_MESSAGES = ("NBIRTH", "NDATA", "NDEATH")
SPARKPLUG_DEVICE_MESSAGES = ("DBIRTH", "DDATA", "DDEATH")

# What the DEVICES stream captures: everything a device publishes that feeds a twin (not the
# commands the gateway publishes to Sparkplug nodes).
DEVICE_INGRESS_SUBJECTS = (
    f"twins.*.{TELEMETRY}",
    f"tenants.*.twins.*.{TELEMETRY}",
    *(f"{SPARKPLUG_SUBJECT_ROOT}.*.{kind}.*" for kind in SPARKPLUG_NODE_MESSAGES),
    *(f"{SPARKPLUG_SUBJECT_ROOT}.*.{kind}.*.*" for kind in SPARKPLUG_DEVICE_MESSAGES),
)


@dataclass(frozen=True)
class TwinTopic:
    """A topic of one twin.

    Attributes:
        tenant: The twin's tenant.
        twin_id: The twin's id as its tenant names it (not qualified).
        kind: ``telemetry``, ``errors``, ``desired``, ``commands`` or ``responses``.
        rest: Levels after the kind (a command's name, a response's request id).
    """

    tenant: str
    twin_id: str
    kind: str
    rest: tuple[str, ...] = ()

    def subject(self) -> str:
        prefix = "" if self.tenant == DEFAULT_TENANT else f"tenants.{self.tenant}."
        return ".".join((f"{prefix}twins", self.twin_id, self.kind, *self.rest))

    def mqtt_topic(self) -> str:
        return mqtt_topic(self.subject())


def parse_subject(subject: str) -> TwinTopic | None:
    """The twin topic a subject is, or None if it is none."""
    tokens = subject.split(".")
    tenant = DEFAULT_TENANT
    if tokens[0] == "tenants" and len(tokens) >= 3:
        tenant, tokens = tokens[1], tokens[2:]
    if len(tokens) < 3 or tokens[0] != "twins" or not tokens[1] or not tokens[2]:
        return None
    return TwinTopic(tenant, tokens[1], tokens[2], tuple(tokens[3:]))


def mqtt_topic(subject: str) -> str:
    """The MQTT topic of a NATS subject (the reverse of nats-server's mapping)."""
    return "/".join(token.replace("//", ".") for token in subject.split("."))


def is_sparkplug(subject: str) -> bool:
    return subject.startswith(f"{SPARKPLUG_SUBJECT_ROOT}.")


def device_permissions(
    tenant: str, twin_ids: Iterable[str] | None, *, sparkplug: bool = False
) -> dict[str, dict[str, list[str]]]:
    """NATS permissions of a device: the topics of its twins (every twin of its tenant when
    ``twin_ids`` is None), and the Sparkplug namespace if it is a Sparkplug node."""
    twins = ["*"] if twin_ids is None else sorted(twin_ids)
    publish = []
    subscribe = []
    for twin in twins:
        publish += [
            TwinTopic(tenant, twin, TELEMETRY).subject(),
            TwinTopic(tenant, twin, RESPONSES, ("*",)).subject(),
        ]
        subscribe += [TwinTopic(tenant, twin, kind).subject() for kind in (ERRORS, DESIRED)] + [
            TwinTopic(tenant, twin, COMMANDS, ("*",)).subject()
        ]
    if sparkplug:
        publish.append(f"{SPARKPLUG_SUBJECT_ROOT}.>")
        subscribe.append(f"{SPARKPLUG_SUBJECT_ROOT}.>")
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}
