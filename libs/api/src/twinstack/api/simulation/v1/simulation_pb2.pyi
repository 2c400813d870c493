from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParameterRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class RunSweepRequest(_message.Message):
    __slots__ = ("model", "scenario_count", "horizon_s", "step_s", "seed", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterRange, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    HORIZON_S_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    model: str
    scenario_count: int
    horizon_s: float
    step_s: float
    seed: int
    parameters: _containers.MessageMap[str, ParameterRange]
    def __init__(self, model: _Optional[str] = ..., scenario_count: _Optional[int] = ..., horizon_s: _Optional[float] = ..., step_s: _Optional[float] = ..., seed: _Optional[int] = ..., parameters: _Optional[_Mapping[str, ParameterRange]] = ...) -> None: ...

class KpiSummary(_message.Message):
    __slots__ = ("name", "mean", "min", "max", "p05", "p50", "p95")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    P05_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean: float
    min: float
    max: float
    p05: float
    p50: float
    p95: float
    def __init__(self, name: _Optional[str] = ..., mean: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., p05: _Optional[float] = ..., p50: _Optional[float] = ..., p95: _Optional[float] = ...) -> None: ...

class RunSweepResponse(_message.Message):
    __slots__ = ("scenario_count", "task_count", "kpis")
    SCENARIO_COUNT_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    KPIS_FIELD_NUMBER: _ClassVar[int]
    scenario_count: int
    task_count: int
    kpis: _containers.RepeatedCompositeFieldContainer[KpiSummary]
    def __init__(self, scenario_count: _Optional[int] = ..., task_count: _Optional[int] = ..., kpis: _Optional[_Iterable[_Union[KpiSummary, _Mapping]]] = ...) -> None: ...
