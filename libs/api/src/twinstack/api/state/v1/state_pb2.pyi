import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import events_pb2 as _events_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Connectivity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTIVITY_UNSPECIFIED: _ClassVar[Connectivity]
    CONNECTIVITY_ONLINE: _ClassVar[Connectivity]
    CONNECTIVITY_STALE: _ClassVar[Connectivity]

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    AGGREGATION_NONE: _ClassVar[Aggregation]
    AGGREGATION_MEAN: _ClassVar[Aggregation]
    AGGREGATION_MIN: _ClassVar[Aggregation]
    AGGREGATION_MAX: _ClassVar[Aggregation]
    AGGREGATION_FIRST: _ClassVar[Aggregation]
    AGGREGATION_LAST: _ClassVar[Aggregation]
    AGGREGATION_COUNT: _ClassVar[Aggregation]
    AGGREGATION_SUM: _ClassVar[Aggregation]
    AGGREGATION_MEDIAN: _ClassVar[Aggregation]
    AGGREGATION_STDDEV: _ClassVar[Aggregation]
    AGGREGATION_PERCENTILE: _ClassVar[Aggregation]
CONNECTIVITY_UNSPECIFIED: Connectivity
CONNECTIVITY_ONLINE: Connectivity
CONNECTIVITY_STALE: Connectivity
AGGREGATION_UNSPECIFIED: Aggregation
AGGREGATION_NONE: Aggregation
AGGREGATION_MEAN: Aggregation
AGGREGATION_MIN: Aggregation
AGGREGATION_MAX: Aggregation
AGGREGATION_FIRST: Aggregation
AGGREGATION_LAST: Aggregation
AGGREGATION_COUNT: Aggregation
AGGREGATION_SUM: Aggregation
AGGREGATION_MEDIAN: Aggregation
AGGREGATION_STDDEV: Aggregation
AGGREGATION_PERCENTILE: Aggregation

class ReportedField(_message.Message):
    __slots__ = ("value", "time")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.Value
    time: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DesiredField(_message.Message):
    __slots__ = ("value", "time")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.Value
    time: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("rule_id", "twin_id", "field", "severity", "active", "value", "message", "raised_time", "cleared_time", "acknowledged", "acknowledged_by", "acknowledged_time")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RAISED_TIME_FIELD_NUMBER: _ClassVar[int]
    CLEARED_TIME_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_TIME_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    twin_id: str
    field: str
    severity: _events_pb2.Severity
    active: bool
    value: float
    message: str
    raised_time: _timestamp_pb2.Timestamp
    cleared_time: _timestamp_pb2.Timestamp
    acknowledged: bool
    acknowledged_by: str
    acknowledged_time: _timestamp_pb2.Timestamp
    def __init__(self, rule_id: _Optional[str] = ..., twin_id: _Optional[str] = ..., field: _Optional[str] = ..., severity: _Optional[_Union[_events_pb2.Severity, str]] = ..., active: _Optional[bool] = ..., value: _Optional[float] = ..., message: _Optional[str] = ..., raised_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cleared_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged: _Optional[bool] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RuleMemory(_message.Message):
    __slots__ = ("last_value", "last_time_unix_ns", "mean", "variance", "samples")
    LAST_VALUE_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    last_value: float
    last_time_unix_ns: int
    mean: float
    variance: float
    samples: int
    def __init__(self, last_value: _Optional[float] = ..., last_time_unix_ns: _Optional[int] = ..., mean: _Optional[float] = ..., variance: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...

class TwinState(_message.Message):
    __slots__ = ("twin_id", "reported", "last_seen_time", "revision", "model_id", "desired", "delta", "connectivity", "last_received_time", "alerts", "rule_memory", "owner_epoch")
    class ReportedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ReportedField
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ReportedField, _Mapping]] = ...) -> None: ...
    class DesiredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DesiredField
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DesiredField, _Mapping]] = ...) -> None: ...
    class DeltaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    class AlertsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Alert
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...
    class RuleMemoryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: RuleMemory
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[RuleMemory, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CONNECTIVITY_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    RULE_MEMORY_FIELD_NUMBER: _ClassVar[int]
    OWNER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    reported: _containers.MessageMap[str, ReportedField]
    last_seen_time: _timestamp_pb2.Timestamp
    revision: int
    model_id: str
    desired: _containers.MessageMap[str, DesiredField]
    delta: _containers.MessageMap[str, _types_pb2.Value]
    connectivity: Connectivity
    last_received_time: _timestamp_pb2.Timestamp
    alerts: _containers.MessageMap[str, Alert]
    rule_memory: _containers.MessageMap[str, RuleMemory]
    owner_epoch: int
    def __init__(self, twin_id: _Optional[str] = ..., reported: _Optional[_Mapping[str, ReportedField]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., model_id: _Optional[str] = ..., desired: _Optional[_Mapping[str, DesiredField]] = ..., delta: _Optional[_Mapping[str, _types_pb2.Value]] = ..., connectivity: _Optional[_Union[Connectivity, str]] = ..., last_received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alerts: _Optional[_Mapping[str, Alert]] = ..., rule_memory: _Optional[_Mapping[str, RuleMemory]] = ..., owner_epoch: _Optional[int] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("twin_id",)
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    def __init__(self, twin_id: _Optional[str] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: TwinState
    def __init__(self, state: _Optional[_Union[TwinState, _Mapping]] = ...) -> None: ...

class BatchGetStatesRequest(_message.Message):
    __slots__ = ("twin_ids",)
    TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    twin_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, twin_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetStatesResponse(_message.Message):
    __slots__ = ("states", "missing_twin_ids")
    STATES_FIELD_NUMBER: _ClassVar[int]
    MISSING_TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[TwinState]
    missing_twin_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, states: _Optional[_Iterable[_Union[TwinState, _Mapping]]] = ..., missing_twin_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("twin_ids", "model_id", "after_revision", "all_twins")
    TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    ALL_TWINS_FIELD_NUMBER: _ClassVar[int]
    twin_ids: _containers.RepeatedScalarFieldContainer[str]
    model_id: str
    after_revision: int
    all_twins: bool
    def __init__(self, twin_ids: _Optional[_Iterable[str]] = ..., model_id: _Optional[str] = ..., after_revision: _Optional[int] = ..., all_twins: _Optional[bool] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("state", "catching_up")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CATCHING_UP_FIELD_NUMBER: _ClassVar[int]
    state: TwinState
    catching_up: bool
    def __init__(self, state: _Optional[_Union[TwinState, _Mapping]] = ..., catching_up: _Optional[bool] = ...) -> None: ...

class SetDesiredRequest(_message.Message):
    __slots__ = ("twin_id", "set", "remove", "expected_revision")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    set: _containers.MessageMap[str, _types_pb2.Value]
    remove: _containers.RepeatedScalarFieldContainer[str]
    expected_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., set: _Optional[_Mapping[str, _types_pb2.Value]] = ..., remove: _Optional[_Iterable[str]] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class SetDesiredResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: TwinState
    def __init__(self, state: _Optional[_Union[TwinState, _Mapping]] = ...) -> None: ...

class QueryHistoryRequest(_message.Message):
    __slots__ = ("twin_ids", "fields", "start_time", "end_time", "aggregation", "percentile", "window", "max_points_per_series")
    TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_PER_SERIES_FIELD_NUMBER: _ClassVar[int]
    twin_ids: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    aggregation: Aggregation
    percentile: float
    window: _duration_pb2.Duration
    max_points_per_series: int
    def __init__(self, twin_ids: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., percentile: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_points_per_series: _Optional[int] = ...) -> None: ...

class HistorySeries(_message.Message):
    __slots__ = ("twin_id", "field", "time_unix_ns", "double_values", "int_values", "bool_values", "string_values", "truncated")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    field: str
    time_unix_ns: _containers.RepeatedScalarFieldContainer[int]
    double_values: _types_pb2.DoubleValues
    int_values: _types_pb2.IntValues
    bool_values: _types_pb2.BoolValues
    string_values: _types_pb2.StringValues
    truncated: bool
    def __init__(self, twin_id: _Optional[str] = ..., field: _Optional[str] = ..., time_unix_ns: _Optional[_Iterable[int]] = ..., double_values: _Optional[_Union[_types_pb2.DoubleValues, _Mapping]] = ..., int_values: _Optional[_Union[_types_pb2.IntValues, _Mapping]] = ..., bool_values: _Optional[_Union[_types_pb2.BoolValues, _Mapping]] = ..., string_values: _Optional[_Union[_types_pb2.StringValues, _Mapping]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class QueryHistoryResponse(_message.Message):
    __slots__ = ("series", "window")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[HistorySeries]
    window: _duration_pb2.Duration
    def __init__(self, series: _Optional[_Iterable[_Union[HistorySeries, _Mapping]]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ThresholdCondition(_message.Message):
    __slots__ = ("direction", "raise_at", "clear_at")
    class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIRECTION_UNSPECIFIED: _ClassVar[ThresholdCondition.Direction]
        DIRECTION_ABOVE: _ClassVar[ThresholdCondition.Direction]
        DIRECTION_BELOW: _ClassVar[ThresholdCondition.Direction]
    DIRECTION_UNSPECIFIED: ThresholdCondition.Direction
    DIRECTION_ABOVE: ThresholdCondition.Direction
    DIRECTION_BELOW: ThresholdCondition.Direction
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RAISE_AT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_AT_FIELD_NUMBER: _ClassVar[int]
    direction: ThresholdCondition.Direction
    raise_at: float
    clear_at: float
    def __init__(self, direction: _Optional[_Union[ThresholdCondition.Direction, str]] = ..., raise_at: _Optional[float] = ..., clear_at: _Optional[float] = ...) -> None: ...

class RateCondition(_message.Message):
    __slots__ = ("max_per_s",)
    MAX_PER_S_FIELD_NUMBER: _ClassVar[int]
    max_per_s: float
    def __init__(self, max_per_s: _Optional[float] = ...) -> None: ...

class StalenessCondition(_message.Message):
    __slots__ = ("max_silence",)
    MAX_SILENCE_FIELD_NUMBER: _ClassVar[int]
    max_silence: _duration_pb2.Duration
    def __init__(self, max_silence: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AnomalyCondition(_message.Message):
    __slots__ = ("alpha", "raise_score", "clear_score", "warmup_samples")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    RAISE_SCORE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_SCORE_FIELD_NUMBER: _ClassVar[int]
    WARMUP_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    raise_score: float
    clear_score: float
    warmup_samples: int
    def __init__(self, alpha: _Optional[float] = ..., raise_score: _Optional[float] = ..., clear_score: _Optional[float] = ..., warmup_samples: _Optional[int] = ...) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ("id", "model_id", "twin_id", "field", "severity", "threshold", "rate", "staleness", "anomaly", "message", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    STALENESS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    model_id: str
    twin_id: str
    field: str
    severity: _events_pb2.Severity
    threshold: ThresholdCondition
    rate: RateCondition
    staleness: StalenessCondition
    anomaly: AnomalyCondition
    message: str
    revision: int
    def __init__(self, id: _Optional[str] = ..., model_id: _Optional[str] = ..., twin_id: _Optional[str] = ..., field: _Optional[str] = ..., severity: _Optional[_Union[_events_pb2.Severity, str]] = ..., threshold: _Optional[_Union[ThresholdCondition, _Mapping]] = ..., rate: _Optional[_Union[RateCondition, _Mapping]] = ..., staleness: _Optional[_Union[StalenessCondition, _Mapping]] = ..., anomaly: _Optional[_Union[AnomalyCondition, _Mapping]] = ..., message: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class PutAlertRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class PutAlertRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class ListAlertRulesRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _types_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListAlertRulesResponse(_message.Message):
    __slots__ = ("rules", "page")
    RULES_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    page: _types_pb2.PageResponse
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DeleteAlertRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class DeleteAlertRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("twin_id", "include_cleared", "page")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CLEARED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    include_cleared: bool
    page: _types_pb2.PageRequest
    def __init__(self, twin_id: _Optional[str] = ..., include_cleared: _Optional[bool] = ..., page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "page")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    page: _types_pb2.PageResponse
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("twin_id", "rule_id", "acknowledged_by")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    rule_id: str
    acknowledged_by: str
    def __init__(self, twin_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., acknowledged_by: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterStatusResponse(_message.Message):
    __slots__ = ("nats_connected_url", "nats_servers", "streams", "partitions", "state_members")
    NATS_CONNECTED_URL_FIELD_NUMBER: _ClassVar[int]
    NATS_SERVERS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    nats_connected_url: str
    nats_servers: _containers.RepeatedScalarFieldContainer[str]
    streams: _containers.RepeatedCompositeFieldContainer[StreamStatus]
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionOwner]
    state_members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nats_connected_url: _Optional[str] = ..., nats_servers: _Optional[_Iterable[str]] = ..., streams: _Optional[_Iterable[_Union[StreamStatus, _Mapping]]] = ..., partitions: _Optional[_Iterable[_Union[PartitionOwner, _Mapping]]] = ..., state_members: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamStatus(_message.Message):
    __slots__ = ("name", "replicas", "leader", "peers", "messages", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    replicas: int
    leader: str
    peers: _containers.RepeatedCompositeFieldContainer[StreamPeer]
    messages: int
    bytes: int
    def __init__(self, name: _Optional[str] = ..., replicas: _Optional[int] = ..., leader: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[StreamPeer, _Mapping]]] = ..., messages: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class StreamPeer(_message.Message):
    __slots__ = ("name", "current", "offline", "lag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    current: bool
    offline: bool
    lag: int
    def __init__(self, name: _Optional[str] = ..., current: _Optional[bool] = ..., offline: _Optional[bool] = ..., lag: _Optional[int] = ...) -> None: ...

class PartitionOwner(_message.Message):
    __slots__ = ("partition", "member")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    partition: int
    member: str
    def __init__(self, partition: _Optional[int] = ..., member: _Optional[str] = ...) -> None: ...
