import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_NATIVE: _ClassVar[ModelFormat]
    MODEL_FORMAT_DTDL: _ClassVar[ModelFormat]

class RelationshipDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATIONSHIP_DIRECTION_UNSPECIFIED: _ClassVar[RelationshipDirection]
    RELATIONSHIP_DIRECTION_OUTGOING: _ClassVar[RelationshipDirection]
    RELATIONSHIP_DIRECTION_INCOMING: _ClassVar[RelationshipDirection]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_NATIVE: ModelFormat
MODEL_FORMAT_DTDL: ModelFormat
RELATIONSHIP_DIRECTION_UNSPECIFIED: RelationshipDirection
RELATIONSHIP_DIRECTION_OUTGOING: RelationshipDirection
RELATIONSHIP_DIRECTION_INCOMING: RelationshipDirection

class ModelSource(_message.Message):
    __slots__ = ("name", "format", "content")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: ModelFormat
    content: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., content: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "display_name", "description", "extends", "document", "resolved_document", "revision", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXTENDS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    description: str
    extends: _containers.RepeatedScalarFieldContainer[str]
    document: str
    resolved_document: str
    revision: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., extends: _Optional[_Iterable[str]] = ..., document: _Optional[str] = ..., resolved_document: _Optional[str] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ImportNote(_message.Message):
    __slots__ = ("path", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    message: str
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CreateModelsRequest(_message.Message):
    __slots__ = ("sources", "allow_breaking_changes", "validate_only")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_BREAKING_CHANGES_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[ModelSource]
    allow_breaking_changes: bool
    validate_only: bool
    def __init__(self, sources: _Optional[_Iterable[_Union[ModelSource, _Mapping]]] = ..., allow_breaking_changes: _Optional[bool] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateModelsResponse(_message.Message):
    __slots__ = ("models", "notes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    notes: _containers.RepeatedCompositeFieldContainer[ImportNote]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., notes: _Optional[_Iterable[_Union[ImportNote, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page", "id_prefix", "latest_only")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LATEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    page: _types_pb2.PageRequest
    id_prefix: str
    latest_only: bool
    def __init__(self, page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ..., id_prefix: _Optional[str] = ..., latest_only: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "page")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    page: _types_pb2.PageResponse
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class Twin(_message.Message):
    __slots__ = ("id", "model_id", "properties", "revision", "create_time", "update_time")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_id: str
    properties: _containers.MessageMap[str, _types_pb2.Value]
    revision: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., model_id: _Optional[str] = ..., properties: _Optional[_Mapping[str, _types_pb2.Value]] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateTwinRequest(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class CreateTwinResponse(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class GetTwinRequest(_message.Message):
    __slots__ = ("twin_id",)
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    def __init__(self, twin_id: _Optional[str] = ...) -> None: ...

class GetTwinResponse(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class UpdateTwinRequest(_message.Message):
    __slots__ = ("twin_id", "set_properties", "remove_properties", "expected_revision", "json_merge_patch")
    class SetPropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    SET_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    JSON_MERGE_PATCH_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    set_properties: _containers.MessageMap[str, _types_pb2.Value]
    remove_properties: _containers.RepeatedScalarFieldContainer[str]
    expected_revision: int
    json_merge_patch: str
    def __init__(self, twin_id: _Optional[str] = ..., set_properties: _Optional[_Mapping[str, _types_pb2.Value]] = ..., remove_properties: _Optional[_Iterable[str]] = ..., expected_revision: _Optional[int] = ..., json_merge_patch: _Optional[str] = ...) -> None: ...

class UpdateTwinResponse(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class MigrateTwinRequest(_message.Message):
    __slots__ = ("twin_id", "model_id", "set_properties", "drop_undeclared", "expected_revision")
    class SetPropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SET_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DROP_UNDECLARED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    model_id: str
    set_properties: _containers.MessageMap[str, _types_pb2.Value]
    drop_undeclared: bool
    expected_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., model_id: _Optional[str] = ..., set_properties: _Optional[_Mapping[str, _types_pb2.Value]] = ..., drop_undeclared: _Optional[bool] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class MigrateTwinResponse(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class DeleteTwinRequest(_message.Message):
    __slots__ = ("twin_id", "expected_revision")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    expected_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class DeleteTwinResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListTwinsRequest(_message.Message):
    __slots__ = ("page", "min_revision")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_REVISION_FIELD_NUMBER: _ClassVar[int]
    page: _types_pb2.PageRequest
    min_revision: int
    def __init__(self, page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ..., min_revision: _Optional[int] = ...) -> None: ...

class ListTwinsResponse(_message.Message):
    __slots__ = ("twins", "page")
    TWINS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    twins: _containers.RepeatedCompositeFieldContainer[Twin]
    page: _types_pb2.PageResponse
    def __init__(self, twins: _Optional[_Iterable[_Union[Twin, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class QueryTwinsRequest(_message.Message):
    __slots__ = ("query", "page", "min_revision")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_REVISION_FIELD_NUMBER: _ClassVar[int]
    query: str
    page: _types_pb2.PageRequest
    min_revision: int
    def __init__(self, query: _Optional[str] = ..., page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ..., min_revision: _Optional[int] = ...) -> None: ...

class QueryTwinsResponse(_message.Message):
    __slots__ = ("twins", "page")
    TWINS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    twins: _containers.RepeatedCompositeFieldContainer[Twin]
    page: _types_pb2.PageResponse
    def __init__(self, twins: _Optional[_Iterable[_Union[Twin, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class Relationship(_message.Message):
    __slots__ = ("id", "source_id", "name", "target_id", "properties", "revision", "create_time")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_id: str
    name: str
    target_id: str
    properties: _containers.MessageMap[str, _types_pb2.Value]
    revision: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., source_id: _Optional[str] = ..., name: _Optional[str] = ..., target_id: _Optional[str] = ..., properties: _Optional[_Mapping[str, _types_pb2.Value]] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRelationshipRequest(_message.Message):
    __slots__ = ("relationship",)
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    relationship: Relationship
    def __init__(self, relationship: _Optional[_Union[Relationship, _Mapping]] = ...) -> None: ...

class CreateRelationshipResponse(_message.Message):
    __slots__ = ("relationship",)
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    relationship: Relationship
    def __init__(self, relationship: _Optional[_Union[Relationship, _Mapping]] = ...) -> None: ...

class DeleteRelationshipRequest(_message.Message):
    __slots__ = ("source_id", "relationship_id", "expected_revision")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    relationship_id: str
    expected_revision: int
    def __init__(self, source_id: _Optional[str] = ..., relationship_id: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class DeleteRelationshipResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListRelationshipsRequest(_message.Message):
    __slots__ = ("twin_id", "direction", "name", "page", "min_revision")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    direction: RelationshipDirection
    name: str
    page: _types_pb2.PageRequest
    min_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., direction: _Optional[_Union[RelationshipDirection, str]] = ..., name: _Optional[str] = ..., page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ..., min_revision: _Optional[int] = ...) -> None: ...

class ListRelationshipsResponse(_message.Message):
    __slots__ = ("relationships", "page")
    RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    relationships: _containers.RepeatedCompositeFieldContainer[Relationship]
    page: _types_pb2.PageResponse
    def __init__(self, relationships: _Optional[_Iterable[_Union[Relationship, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class RelationshipSet(_message.Message):
    __slots__ = ("relationships",)
    RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    relationships: _containers.RepeatedCompositeFieldContainer[Relationship]
    def __init__(self, relationships: _Optional[_Iterable[_Union[Relationship, _Mapping]]] = ...) -> None: ...
