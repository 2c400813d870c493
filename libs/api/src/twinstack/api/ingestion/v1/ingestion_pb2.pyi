from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestBatchRequest(_message.Message):
    __slots__ = ("points", "frames")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[_types_pb2.TelemetryPoint]
    frames: _containers.RepeatedCompositeFieldContainer[_types_pb2.TelemetryFrame]
    def __init__(self, points: _Optional[_Iterable[_Union[_types_pb2.TelemetryPoint, _Mapping]]] = ..., frames: _Optional[_Iterable[_Union[_types_pb2.TelemetryFrame, _Mapping]]] = ...) -> None: ...

class IngestBatchResponse(_message.Message):
    __slots__ = ("accepted_points", "published_messages", "duplicate_messages")
    ACCEPTED_POINTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    accepted_points: int
    published_messages: int
    duplicate_messages: int
    def __init__(self, accepted_points: _Optional[int] = ..., published_messages: _Optional[int] = ..., duplicate_messages: _Optional[int] = ...) -> None: ...

class IngestStreamRequest(_message.Message):
    __slots__ = ("sequence", "points", "frames")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    points: _containers.RepeatedCompositeFieldContainer[_types_pb2.TelemetryPoint]
    frames: _containers.RepeatedCompositeFieldContainer[_types_pb2.TelemetryFrame]
    def __init__(self, sequence: _Optional[int] = ..., points: _Optional[_Iterable[_Union[_types_pb2.TelemetryPoint, _Mapping]]] = ..., frames: _Optional[_Iterable[_Union[_types_pb2.TelemetryFrame, _Mapping]]] = ...) -> None: ...

class PointViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class IngestStreamResponse(_message.Message):
    __slots__ = ("sequence", "code", "message", "violations", "retry_after_ms", "accepted_points", "published_messages", "duplicate_messages")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_POINTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    code: int
    message: str
    violations: _containers.RepeatedCompositeFieldContainer[PointViolation]
    retry_after_ms: int
    accepted_points: int
    published_messages: int
    duplicate_messages: int
    def __init__(self, sequence: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[PointViolation, _Mapping]]] = ..., retry_after_ms: _Optional[int] = ..., accepted_points: _Optional[int] = ..., published_messages: _Optional[int] = ..., duplicate_messages: _Optional[int] = ...) -> None: ...
