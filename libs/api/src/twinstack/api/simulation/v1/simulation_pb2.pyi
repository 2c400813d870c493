import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Integrator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTEGRATOR_UNSPECIFIED: _ClassVar[Integrator]
    INTEGRATOR_RK4: _ClassVar[Integrator]
    INTEGRATOR_EULER: _ClassVar[Integrator]

class Sampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLER_UNSPECIFIED: _ClassVar[Sampler]
    SAMPLER_GRID: _ClassVar[Sampler]
    SAMPLER_RANDOM: _ClassVar[Sampler]
    SAMPLER_LATIN_HYPERCUBE: _ClassVar[Sampler]
    SAMPLER_SOBOL: _ClassVar[Sampler]
INTEGRATOR_UNSPECIFIED: Integrator
INTEGRATOR_RK4: Integrator
INTEGRATOR_EULER: Integrator
SAMPLER_UNSPECIFIED: Sampler
SAMPLER_GRID: Sampler
SAMPLER_RANDOM: Sampler
SAMPLER_LATIN_HYPERCUBE: Sampler
SAMPLER_SOBOL: Sampler

class TwinSelection(_message.Message):
    __slots__ = ("twin_ids", "query")
    TWIN_IDS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    twin_ids: _containers.RepeatedScalarFieldContainer[str]
    query: str
    def __init__(self, twin_ids: _Optional[_Iterable[str]] = ..., query: _Optional[str] = ...) -> None: ...

class BuiltinParameter(_message.Message):
    __slots__ = ("name", "default", "min", "max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    default: float
    min: float
    max: float
    def __init__(self, name: _Optional[str] = ..., default: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class BuiltinModel(_message.Message):
    __slots__ = ("name", "use_case", "description", "parameters", "kpis")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USE_CASE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    KPIS_FIELD_NUMBER: _ClassVar[int]
    name: str
    use_case: str
    description: str
    parameters: _containers.RepeatedCompositeFieldContainer[BuiltinParameter]
    kpis: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., use_case: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[BuiltinParameter, _Mapping]]] = ..., kpis: _Optional[_Iterable[str]] = ...) -> None: ...

class ListBuiltinModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBuiltinModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[BuiltinModel]
    def __init__(self, models: _Optional[_Iterable[_Union[BuiltinModel, _Mapping]]] = ...) -> None: ...

class RunScenarioRequest(_message.Message):
    __slots__ = ("twins", "overrides", "horizon_s", "step_s", "integrator", "max_points", "input_noise", "seed", "thresholds")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class InputNoiseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TWINS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_S_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    INTEGRATOR_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_NOISE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    twins: TwinSelection
    overrides: _containers.ScalarMap[str, float]
    horizon_s: float
    step_s: float
    integrator: Integrator
    max_points: int
    input_noise: _containers.ScalarMap[str, float]
    seed: int
    thresholds: _containers.ScalarMap[str, float]
    def __init__(self, twins: _Optional[_Union[TwinSelection, _Mapping]] = ..., overrides: _Optional[_Mapping[str, float]] = ..., horizon_s: _Optional[float] = ..., step_s: _Optional[float] = ..., integrator: _Optional[_Union[Integrator, str]] = ..., max_points: _Optional[int] = ..., input_noise: _Optional[_Mapping[str, float]] = ..., seed: _Optional[int] = ..., thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class TwinScenario(_message.Message):
    __slots__ = ("twin_id", "state_revision", "twin_revision", "initial", "values", "times_s", "series", "kpis")
    class InitialEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class KpisEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    TWIN_REVISION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMES_S_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    KPIS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    state_revision: int
    twin_revision: int
    initial: _containers.ScalarMap[str, float]
    values: _containers.ScalarMap[str, float]
    times_s: _containers.RepeatedScalarFieldContainer[float]
    series: _containers.RepeatedCompositeFieldContainer[Series]
    kpis: _containers.ScalarMap[str, float]
    def __init__(self, twin_id: _Optional[str] = ..., state_revision: _Optional[int] = ..., twin_revision: _Optional[int] = ..., initial: _Optional[_Mapping[str, float]] = ..., values: _Optional[_Mapping[str, float]] = ..., times_s: _Optional[_Iterable[float]] = ..., series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ..., kpis: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RunScenarioResponse(_message.Message):
    __slots__ = ("model_id", "kernel", "twins")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    TWINS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    kernel: str
    twins: _containers.RepeatedCompositeFieldContainer[TwinScenario]
    def __init__(self, model_id: _Optional[str] = ..., kernel: _Optional[str] = ..., twins: _Optional[_Iterable[_Union[TwinScenario, _Mapping]]] = ...) -> None: ...

class ParameterRange(_message.Message):
    __slots__ = ("min", "max", "levels")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    levels: int
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., levels: _Optional[int] = ...) -> None: ...

class InputStep(_message.Message):
    __slots__ = ("at_s", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AT_S_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    at_s: float
    values: _containers.ScalarMap[str, float]
    def __init__(self, at_s: _Optional[float] = ..., values: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("twins", "samples", "horizon_s", "step_s", "integrator", "uncertain", "input_noise", "seed", "alert_probability", "max_points")
    class UncertainEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterRange, _Mapping]] = ...) -> None: ...
    class InputNoiseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TWINS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_S_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    INTEGRATOR_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    INPUT_NOISE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ALERT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    twins: TwinSelection
    samples: int
    horizon_s: float
    step_s: float
    integrator: Integrator
    uncertain: _containers.MessageMap[str, ParameterRange]
    input_noise: _containers.ScalarMap[str, float]
    seed: int
    alert_probability: float
    max_points: int
    def __init__(self, twins: _Optional[_Union[TwinSelection, _Mapping]] = ..., samples: _Optional[int] = ..., horizon_s: _Optional[float] = ..., step_s: _Optional[float] = ..., integrator: _Optional[_Union[Integrator, str]] = ..., uncertain: _Optional[_Mapping[str, ParameterRange]] = ..., input_noise: _Optional[_Mapping[str, float]] = ..., seed: _Optional[int] = ..., alert_probability: _Optional[float] = ..., max_points: _Optional[int] = ...) -> None: ...

class ConditionRisk(_message.Message):
    __slots__ = ("condition", "severity", "message", "probability", "time_to_failure_p05_s", "time_to_failure_p50_s", "time_to_failure_p95_s", "alerted")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FAILURE_P05_S_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FAILURE_P50_S_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FAILURE_P95_S_FIELD_NUMBER: _ClassVar[int]
    ALERTED_FIELD_NUMBER: _ClassVar[int]
    condition: str
    severity: str
    message: str
    probability: float
    time_to_failure_p05_s: float
    time_to_failure_p50_s: float
    time_to_failure_p95_s: float
    alerted: bool
    def __init__(self, condition: _Optional[str] = ..., severity: _Optional[str] = ..., message: _Optional[str] = ..., probability: _Optional[float] = ..., time_to_failure_p05_s: _Optional[float] = ..., time_to_failure_p50_s: _Optional[float] = ..., time_to_failure_p95_s: _Optional[float] = ..., alerted: _Optional[bool] = ...) -> None: ...

class Fan(_message.Message):
    __slots__ = ("name", "p05", "p25", "p50", "p75", "p95")
    NAME_FIELD_NUMBER: _ClassVar[int]
    P05_FIELD_NUMBER: _ClassVar[int]
    P25_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P75_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    name: str
    p05: _containers.RepeatedScalarFieldContainer[float]
    p25: _containers.RepeatedScalarFieldContainer[float]
    p50: _containers.RepeatedScalarFieldContainer[float]
    p75: _containers.RepeatedScalarFieldContainer[float]
    p95: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., p05: _Optional[_Iterable[float]] = ..., p25: _Optional[_Iterable[float]] = ..., p50: _Optional[_Iterable[float]] = ..., p75: _Optional[_Iterable[float]] = ..., p95: _Optional[_Iterable[float]] = ...) -> None: ...

class TwinForecast(_message.Message):
    __slots__ = ("twin_id", "state_revision", "risks", "times_s", "fans")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    RISKS_FIELD_NUMBER: _ClassVar[int]
    TIMES_S_FIELD_NUMBER: _ClassVar[int]
    FANS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    state_revision: int
    risks: _containers.RepeatedCompositeFieldContainer[ConditionRisk]
    times_s: _containers.RepeatedScalarFieldContainer[float]
    fans: _containers.RepeatedCompositeFieldContainer[Fan]
    def __init__(self, twin_id: _Optional[str] = ..., state_revision: _Optional[int] = ..., risks: _Optional[_Iterable[_Union[ConditionRisk, _Mapping]]] = ..., times_s: _Optional[_Iterable[float]] = ..., fans: _Optional[_Iterable[_Union[Fan, _Mapping]]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("forecast_id", "start_time", "model_id", "twins", "points_written")
    FORECAST_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TWINS_FIELD_NUMBER: _ClassVar[int]
    POINTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    forecast_id: str
    start_time: _timestamp_pb2.Timestamp
    model_id: str
    twins: _containers.RepeatedCompositeFieldContainer[TwinForecast]
    points_written: int
    def __init__(self, forecast_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_id: _Optional[str] = ..., twins: _Optional[_Iterable[_Union[TwinForecast, _Mapping]]] = ..., points_written: _Optional[int] = ...) -> None: ...

class CalibrateRequest(_message.Message):
    __slots__ = ("twin_id", "parameters", "start_time", "end_time", "step_s", "integrator")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    INTEGRATOR_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    parameters: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    step_s: float
    integrator: Integrator
    def __init__(self, twin_id: _Optional[str] = ..., parameters: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step_s: _Optional[float] = ..., integrator: _Optional[_Union[Integrator, str]] = ...) -> None: ...

class FittedParameter(_message.Message):
    __slots__ = ("name", "value", "initial", "std_error", "min", "max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    STD_ERROR_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    initial: float
    std_error: float
    min: float
    max: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., initial: _Optional[float] = ..., std_error: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class FieldFit(_message.Message):
    __slots__ = ("state", "field", "points", "rmse", "r_squared")
    STATE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    RMSE_FIELD_NUMBER: _ClassVar[int]
    R_SQUARED_FIELD_NUMBER: _ClassVar[int]
    state: str
    field: str
    points: int
    rmse: float
    r_squared: float
    def __init__(self, state: _Optional[str] = ..., field: _Optional[str] = ..., points: _Optional[int] = ..., rmse: _Optional[float] = ..., r_squared: _Optional[float] = ...) -> None: ...

class CalibrateResponse(_message.Message):
    __slots__ = ("twin_id", "parameters", "fits", "converged", "message", "evaluations")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    parameters: _containers.RepeatedCompositeFieldContainer[FittedParameter]
    fits: _containers.RepeatedCompositeFieldContainer[FieldFit]
    converged: bool
    message: str
    evaluations: int
    def __init__(self, twin_id: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[FittedParameter, _Mapping]]] = ..., fits: _Optional[_Iterable[_Union[FieldFit, _Mapping]]] = ..., converged: _Optional[bool] = ..., message: _Optional[str] = ..., evaluations: _Optional[int] = ...) -> None: ...
