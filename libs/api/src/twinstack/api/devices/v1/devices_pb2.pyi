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

class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_UNSPECIFIED: _ClassVar[Protocol]
    PROTOCOL_MQTT: _ClassVar[Protocol]
    PROTOCOL_SPARKPLUG_B: _ClassVar[Protocol]
    PROTOCOL_OPC_UA: _ClassVar[Protocol]

class DeviceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATUS_UNSPECIFIED: _ClassVar[DeviceStatus]
    DEVICE_STATUS_ONLINE: _ClassVar[DeviceStatus]
    DEVICE_STATUS_OFFLINE: _ClassVar[DeviceStatus]
PROTOCOL_UNSPECIFIED: Protocol
PROTOCOL_MQTT: Protocol
PROTOCOL_SPARKPLUG_B: Protocol
PROTOCOL_OPC_UA: Protocol
DEVICE_STATUS_UNSPECIFIED: DeviceStatus
DEVICE_STATUS_ONLINE: DeviceStatus
DEVICE_STATUS_OFFLINE: DeviceStatus

class Device(_message.Message):
    __slots__ = ("device_id", "protocol", "twin_ids", "status", "last_seen_time", "messages", "rejected_messages", "last_error", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    protocol: Protocol
    twin_ids: _containers.RepeatedScalarFieldContainer[str]
    status: DeviceStatus
    last_seen_time: _timestamp_pb2.Timestamp
    messages: int
    rejected_messages: int
    last_error: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, device_id: _Optional[str] = ..., protocol: _Optional[_Union[Protocol, str]] = ..., twin_ids: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[DeviceStatus, str]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., messages: _Optional[int] = ..., rejected_messages: _Optional[int] = ..., last_error: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("protocol",)
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    protocol: Protocol
    def __init__(self, protocol: _Optional[_Union[Protocol, str]] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class InvokeCommandRequest(_message.Message):
    __slots__ = ("twin_id", "command", "request", "timeout_ms")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    command: str
    request: _types_pb2.Value
    timeout_ms: int
    def __init__(self, twin_id: _Optional[str] = ..., command: _Optional[str] = ..., request: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class InvokeCommandResponse(_message.Message):
    __slots__ = ("response", "request_id")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    response: _types_pb2.Value
    request_id: str
    def __init__(self, response: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
