import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ("twin_id", "set_properties", "remove_properties", "expected_revision")
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
    twin_id: str
    set_properties: _containers.MessageMap[str, _types_pb2.Value]
    remove_properties: _containers.RepeatedScalarFieldContainer[str]
    expected_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., set_properties: _Optional[_Mapping[str, _types_pb2.Value]] = ..., remove_properties: _Optional[_Iterable[str]] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class UpdateTwinResponse(_message.Message):
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
