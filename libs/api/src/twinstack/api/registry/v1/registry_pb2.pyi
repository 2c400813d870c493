import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
