"""The registry's calls: models, twins and the relationships between them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from twinstack.api.registry.v1 import registry_pb2
from twinstack.sdk._transport import (
    AsyncArea,
    Paged,
    SyncArea,
    Unary,
    async_call,
    async_pages,
    sync_call,
    sync_pages,
)
from twinstack.sdk.values import to_values

_DIRECTIONS = {
    "outgoing": registry_pb2.RELATIONSHIP_DIRECTION_OUTGOING,
    "incoming": registry_pb2.RELATIONSHIP_DIRECTION_INCOMING,
}


def create_models(
    sources: Sequence[registry_pb2.ModelSource],
    *,
    allow_breaking_changes: bool = False,
    validate_only: bool = False,
) -> Unary[registry_pb2.CreateModelsResponse]:
    """Stores models, native or DTDL, all or none.

    Args:
        sources: The model documents; :func:`twinstack.sdk.models.model_sources` reads them
            from files and folders.
        allow_breaking_changes: Store a new version even if twins of the old one would break.
        validate_only: Check everything, store nothing.

    Returns:
        The stored models and what a DTDL import could not map (``notes``).
    """
    request = registry_pb2.CreateModelsRequest(
        sources=sources,
        allow_breaking_changes=allow_breaking_changes,
        validate_only=validate_only,
    )
    return Unary("registry", "CreateModels", request)


def get_model(model_id: str) -> Unary[registry_pb2.Model]:
    """A model with its inheritance resolved (``resolved_document``).

    Args:
        model_id: The model's DTMI, version included (``dtmi:...;1``).
    """
    request = registry_pb2.GetModelRequest(model_id=model_id)
    return Unary("registry", "GetModel", request, lambda r: r.model)


def list_models(
    *, id_prefix: str = "", latest_only: bool = False, page_size: int = 500
) -> Paged[registry_pb2.Model]:
    """Every stored model in id order, fetched a page at a time.

    Args:
        id_prefix: Only models whose DTMI starts with this.
        latest_only: Only the newest version of each model.
        page_size: Models per page.
    """
    request = registry_pb2.ListModelsRequest(id_prefix=id_prefix, latest_only=latest_only)
    return Paged("registry", "ListModels", request, "models", page_size)


def create_twin(
    twin_id: str, model_id: str, properties: Mapping[str, Any] | None = None
) -> Unary[registry_pb2.Twin]:
    """Creates a twin of a model.

    Args:
        twin_id: The new twin's id.
        model_id: Its model's DTMI.
        properties: Property name → value, checked against the model.

    Returns:
        The stored twin, with its revision.

    Raises:
        AlreadyExistsError: A twin with this id exists.
    """
    twin = registry_pb2.Twin(id=twin_id, model_id=model_id, properties=to_values(properties))
    request = registry_pb2.CreateTwinRequest(twin=twin)
    return Unary("registry", "CreateTwin", request, lambda r: r.twin)


def get_twin(twin_id: str) -> Unary[registry_pb2.Twin]:
    """One twin: its model, properties and revision.

    Raises:
        NotFoundError: No twin has this id.
    """
    request = registry_pb2.GetTwinRequest(twin_id=twin_id)
    return Unary("registry", "GetTwin", request, lambda r: r.twin)


def update_twin(
    twin_id: str,
    set_properties: Mapping[str, Any] | None = None,
    remove_properties: Sequence[str] = (),
    *,
    expected_revision: int = 0,
    merge_patch: Mapping[str, Any] | None = None,
) -> Unary[registry_pb2.Twin]:
    """Changes a twin's properties.

    Args:
        twin_id: The twin.
        set_properties: Property name → new value.
        remove_properties: Properties to remove.
        expected_revision: Apply only if the twin is still at this revision (0: always).
        merge_patch: A JSON merge patch (RFC 7386) over the properties; None values remove.

    Raises:
        RevisionMismatchError: The twin moved past ``expected_revision``.
    """
    request = registry_pb2.UpdateTwinRequest(
        twin_id=twin_id,
        set_properties=to_values(set_properties),
        remove_properties=remove_properties,
        expected_revision=expected_revision,
        json_merge_patch=json.dumps(merge_patch) if merge_patch is not None else "",
    )
    return Unary("registry", "UpdateTwin", request, lambda r: r.twin)


def migrate_twin(
    twin_id: str,
    model_id: str,
    set_properties: Mapping[str, Any] | None = None,
    *,
    drop_undeclared: bool = False,
    expected_revision: int = 0,
) -> Unary[registry_pb2.Twin]:
    """Moves a twin to another model (version).

    Args:
        twin_id: The twin.
        model_id: The model to move to.
        set_properties: Values the new model needs.
        drop_undeclared: Drop properties the new model does not declare (else refused).
        expected_revision: Apply only if the twin is still at this revision (0: always).
    """
    request = registry_pb2.MigrateTwinRequest(
        twin_id=twin_id,
        model_id=model_id,
        set_properties=to_values(set_properties),
        drop_undeclared=drop_undeclared,
        expected_revision=expected_revision,
    )
    return Unary("registry", "MigrateTwin", request, lambda r: r.twin)


def delete_twin(twin_id: str, *, expected_revision: int = 0) -> Unary[int]:
    """Deletes a twin (it must have no relationships).

    Returns:
        A registry revision at or after the deletion.
    """
    request = registry_pb2.DeleteTwinRequest(twin_id=twin_id, expected_revision=expected_revision)
    return Unary("registry", "DeleteTwin", request, lambda r: int(r.revision))


def list_twins(*, page_size: int = 500, min_revision: int = 0) -> Paged[registry_pb2.Twin]:
    """Every twin in id order, fetched a page at a time.

    Args:
        page_size: Twins per page.
        min_revision: A revision one of your writes returned: the listing reflects that write.
    """
    request = registry_pb2.ListTwinsRequest(min_revision=min_revision)
    return Paged("registry", "ListTwins", request, "twins", page_size)


def query_twins(
    query: str, *, page_size: int = 500, min_revision: int = 0
) -> Paged[registry_pb2.Twin]:
    """Every twin a query matches, in id order (``docs/models.md`` has the grammar).

    Args:
        query: For example ``model = 'dtmi:twinstack:examples:Machine;1' AND
            properties.line = 'line1'``.
        page_size: Twins per page.
        min_revision: A revision one of your writes returned: the answer reflects that write.
    """
    request = registry_pb2.QueryTwinsRequest(query=query, min_revision=min_revision)
    return Paged("registry", "QueryTwins", request, "twins", page_size)


def create_relationship(
    source_id: str,
    name: str,
    target_id: str,
    properties: Mapping[str, Any] | None = None,
    *,
    relationship_id: str = "",
) -> Unary[registry_pb2.Relationship]:
    """Links two twins by a relationship their model declares.

    Args:
        source_id: The twin the relationship starts at.
        name: The relationship's name in the source's model.
        target_id: The twin it points to.
        properties: The relationship's own properties.
        relationship_id: Its id (generated when empty).
    """
    relationship = registry_pb2.Relationship(
        id=relationship_id,
        source_id=source_id,
        name=name,
        target_id=target_id,
        properties=to_values(properties),
    )
    request = registry_pb2.CreateRelationshipRequest(relationship=relationship)
    return Unary("registry", "CreateRelationship", request, lambda r: r.relationship)


def delete_relationship(
    source_id: str, relationship_id: str, *, expected_revision: int = 0
) -> Unary[int]:
    """Deletes a relationship.

    Returns:
        A registry revision at or after the deletion.
    """
    request = registry_pb2.DeleteRelationshipRequest(
        source_id=source_id, relationship_id=relationship_id, expected_revision=expected_revision
    )
    return Unary("registry", "DeleteRelationship", request, lambda r: int(r.revision))


def list_relationships(
    twin_id: str,
    *,
    incoming: bool = False,
    name: str = "",
    min_revision: int = 0,
    page_size: int = 1000,
) -> Paged[registry_pb2.Relationship]:
    """A twin's relationships, fetched a page at a time.

    Args:
        twin_id: The twin.
        incoming: Those that point to it instead of those that start at it.
        name: Only relationships of this name.
        min_revision: A revision one of your writes returned: the listing reflects that write.
        page_size: Relationships per page.
    """
    request = registry_pb2.ListRelationshipsRequest(
        twin_id=twin_id,
        direction=_DIRECTIONS["incoming" if incoming else "outgoing"],
        name=name,
        min_revision=min_revision,
    )
    return Paged("registry", "ListRelationships", request, "relationships", page_size)


class Registry(SyncArea):
    """Models, twins and relationships (``client.registry``)."""

    create_models = sync_call(create_models)
    get_model = sync_call(get_model)
    list_models = sync_pages(list_models)
    create_twin = sync_call(create_twin)
    get_twin = sync_call(get_twin)
    update_twin = sync_call(update_twin)
    migrate_twin = sync_call(migrate_twin)
    delete_twin = sync_call(delete_twin)
    list_twins = sync_pages(list_twins)
    query_twins = sync_pages(query_twins)
    create_relationship = sync_call(create_relationship)
    delete_relationship = sync_call(delete_relationship)
    list_relationships = sync_pages(list_relationships)


class AsyncRegistry(AsyncArea):
    """Models, twins and relationships (``client.registry`` of an :class:`AsyncClient`)."""

    create_models = async_call(create_models)
    get_model = async_call(get_model)
    list_models = async_pages(list_models)
    create_twin = async_call(create_twin)
    get_twin = async_call(get_twin)
    update_twin = async_call(update_twin)
    migrate_twin = async_call(migrate_twin)
    delete_twin = async_call(delete_twin)
    list_twins = async_pages(list_twins)
    query_twins = async_pages(query_twins)
    create_relationship = async_call(create_relationship)
    delete_relationship = async_call(delete_relationship)
    list_relationships = async_pages(list_relationships)
