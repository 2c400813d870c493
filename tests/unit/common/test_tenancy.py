"""Tenant-qualified ids: what the server bootstrap does to every request, response and error."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2

import twinstack.api
from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import InvalidArgumentError, NotFoundError, TwinstackError
from twinstack.common.tenancy import (
    DEFAULT_IDS,
    ID_FIELDS,
    OWN_ID_FIELDS,
    IdTranslator,
    external_id,
    ids_of,
    stripped_status,
    tenant_of,
)

ACME = ids_of("acme")

# String fields named like ids that are never qualified, and why each is safe unqualified.
UNQUALIFIED_IDS = {
    # Stored with their tenant, looked up within the caller's (another's answers NOT_FOUND).
    ("twinstack.api.access.v1.ApiKey", "id"),
    ("twinstack.api.access.v1.RevokeApiKeyRequest", "id"),
    ("twinstack.api.access.v1.RoleBinding", "id"),
    ("twinstack.api.access.v1.DeleteRoleBindingRequest", "id"),
    # A device's id is its topic, node or endpoint, listed from the caller's tenant's records;
    # a command's request id is a fresh UUID.
    ("twinstack.api.devices.v1.Device", "device_id"),
    ("twinstack.api.devices.v1.InvokeCommandResponse", "request_id"),
    # A relationship's id is unique under its source twin, which is qualified.
    ("twinstack.api.registry.v1.Relationship", "id"),
    ("twinstack.api.registry.v1.DeleteRelationshipRequest", "relationship_id"),
    ("twinstack.api.common.v1.RelationshipChangedEvent", "relationship_id"),
    # Random ids of records that carry their tenant (sweeps) or of one answer (forecasts).
    ("twinstack.api.simulation.v1.Sweep", "sweep_id"),
    ("twinstack.api.simulation.v1.GetSweepRequest", "sweep_id"),
    ("twinstack.api.simulation.v1.WatchSweepRequest", "sweep_id"),
    ("twinstack.api.simulation.v1.CancelSweepRequest", "sweep_id"),
    ("twinstack.api.simulation.v1.ReadSweepResultsRequest", "sweep_id"),
    ("twinstack.api.simulation.v1.ForecastResponse", "forecast_id"),
    ("twinstack.api.common.v1.PredictedAlertEvent", "forecast_id"),
    # Claimed under the tenant-qualified submitter.
    ("twinstack.api.simulation.v1.Sweep", "request_id"),
    ("twinstack.api.simulation.v1.SubmitSweepRequest", "request_id"),
    ("twinstack.api.simulation.v1.RunSweepRequest", "request_id"),
}


def _unclassified(descriptor: Descriptor) -> set[tuple[str, str]]:
    found = set()
    for item in descriptor.fields:
        named_like_id = item.name == "id" or item.name.endswith(("_id", "_ids"))
        if item.type != FieldDescriptor.TYPE_STRING or not named_like_id:
            continue
        if item.name in ID_FIELDS or (item.name == "id" and descriptor.full_name in OWN_ID_FIELDS):
            continue
        found.add((descriptor.full_name, item.name))
    for nested in descriptor.nested_types:
        found |= _unclassified(nested)
    return found


def test_every_id_field_of_the_api_is_qualified_or_said_to_be_safe_unqualified() -> None:
    unclassified: set[tuple[str, str]] = set()
    for module in pkgutil.walk_packages(twinstack.api.__path__, "twinstack.api."):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(module.name).DESCRIPTOR
            for descriptor in file.message_types_by_name.values():
                unclassified |= _unclassified(descriptor)
    assert unclassified == UNQUALIFIED_IDS


def test_ids_of_a_tenant_are_qualified_and_the_default_tenants_are_not() -> None:
    assert ACME.inner("pump-1") == "acme/pump-1"
    assert DEFAULT_IDS.inner("pump-1") == "pump-1"
    assert tenant_of("acme/pump-1") == "acme"
    assert tenant_of("pump-1") == "default"
    assert external_id("acme/dtmi:acme:Pump;1") == "dtmi:acme:Pump;1"
    assert ACME.owns("acme/pump-1")
    assert not ACME.owns("pump-1")
    assert not ACME.owns("acmex/pump-1")
    assert not DEFAULT_IDS.owns("acme/pump-1")


def test_requests_are_qualified_deeply_and_only_in_id_fields() -> None:
    translator = IdTranslator()
    request = registry_pb2.CreateRelationshipRequest(
        relationship=registry_pb2.Relationship(
            id="feeds-1", source_id="pump-1", target_id="tank-1", name="feeds"
        )
    )
    translator.qualify(request, ACME)
    assert request.relationship.source_id == "acme/pump-1"
    assert request.relationship.target_id == "acme/tank-1"
    assert request.relationship.id == "feeds-1"
    assert request.relationship.name == "feeds"

    batch = state_pb2.BatchGetStatesRequest(twin_ids=["a", "b"])
    translator.qualify(batch, ACME)
    assert list(batch.twin_ids) == ["acme/a", "acme/b"]

    rule = state_pb2.PutAlertRuleRequest(rule=state_pb2.AlertRule(id="hot", twin_id="p"))
    translator.qualify(rule, ACME)
    assert rule.rule.WhichOneof("scope") == "twin_id", "an empty model_id selects nothing"
    assert (rule.rule.id, rule.rule.twin_id) == ("acme/hot", "acme/p")

    twin = registry_pb2.CreateTwinRequest(twin=registry_pb2.Twin(id="p", model_id="dtmi:a:P;1"))
    translator.qualify(twin, DEFAULT_IDS)
    assert (twin.twin.id, twin.twin.model_id) == ("p", "dtmi:a:P;1")


@pytest.mark.parametrize("ids", [DEFAULT_IDS, ACME])
def test_no_caller_can_name_an_id_with_a_tenant_in_it(ids: object) -> None:
    request = state_pb2.BatchGetStatesRequest(twin_ids=["ok", "other/pump-1"])
    with pytest.raises(InvalidArgumentError) as raised:
        IdTranslator().qualify(request, ids)  # type: ignore[arg-type]
    assert [v.field for v in raised.value.violations] == ["twin_ids[1]"]


def test_responses_are_stripped_map_keys_included_and_a_foreign_id_is_never_sent() -> None:
    translator = IdTranslator()
    state = state_pb2.TwinState(twin_id="acme/pump-1", model_id="acme/dtmi:a:P;1")
    state.alerts["acme/hot"].CopyFrom(
        state_pb2.Alert(rule_id="acme/hot", twin_id="acme/pump-1", message="acme/pump-1 is hot")
    )
    translator.strip(state, ACME)
    assert (state.twin_id, state.model_id) == ("pump-1", "dtmi:a:P;1")
    assert list(state.alerts) == ["hot"]
    assert state.alerts["hot"].rule_id == "hot"
    assert state.alerts["hot"].message == "pump-1 is hot"

    leaking = registry_pb2.ListTwinsResponse(twins=[registry_pb2.Twin(id="globex/pump-1")])
    with pytest.raises(TwinstackError) as raised:
        translator.strip(leaking, ACME)
    assert raised.value.code is grpc.StatusCode.INTERNAL
    default_leak = registry_pb2.GetTwinResponse(twin=registry_pb2.Twin(id="acme/pump-1"))
    with pytest.raises(TwinstackError):
        translator.strip(default_leak, DEFAULT_IDS)


def test_errors_name_the_callers_own_ids() -> None:
    status = NotFoundError("twin", "acme/pump-1", "no twin 'acme/pump-1'").to_status()
    stripped = stripped_status(status, ACME)
    assert stripped.message == "no twin 'pump-1'"
    infos = []
    for detail in stripped.details:
        info = error_details_pb2.ResourceInfo()
        if detail.Unpack(info):
            infos.append(info.resource_name)
    assert infos == ["pump-1"]
    assert stripped_status(status, DEFAULT_IDS) is status


def test_telemetry_ids_are_left_to_the_ingestion_service_which_qualifies_them_per_twin() -> None:
    request = ingestion_pb2.IngestBatchRequest(
        points=[types_pb2.TelemetryPoint(twin_id="other/pump-1")],
        frames=[types_pb2.TelemetryFrame(twin_id="pump-2")],
    )
    IdTranslator().qualify(request, ACME)
    assert request.points[0].twin_id == "other/pump-1"
    assert request.frames[0].twin_id == "pump-2"
