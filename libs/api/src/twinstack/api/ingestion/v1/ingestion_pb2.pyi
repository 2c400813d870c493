from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestBatchRequest(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_types_pb2.TelemetryPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[_types_pb2.TelemetryPoint, _Mapping]]] = ...) -> None: ...

class IngestBatchResponse(_message.Message):
    __slots__ = ("accepted_points", "published_messages", "duplicate_messages")
    ACCEPTED_POINTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    accepted_points: int
    published_messages: int
    duplicate_messages: int
    def __init__(self, accepted_points: _Optional[int] = ..., published_messages: _Optional[int] = ..., duplicate_messages: _Optional[int] = ...) -> None: ...
