import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from twinstack.api.simulation.v1 import simulation_pb2 as _simulation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SweepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWEEP_STATE_UNSPECIFIED: _ClassVar[SweepState]
    SWEEP_STATE_QUEUED: _ClassVar[SweepState]
    SWEEP_STATE_RUNNING: _ClassVar[SweepState]
    SWEEP_STATE_SUCCEEDED: _ClassVar[SweepState]
    SWEEP_STATE_FAILED: _ClassVar[SweepState]
    SWEEP_STATE_CANCELLED: _ClassVar[SweepState]

class ResultRows(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_ROWS_UNSPECIFIED: _ClassVar[ResultRows]
    RESULT_ROWS_ALL: _ClassVar[ResultRows]
    RESULT_ROWS_SUMMARIES_ONLY: _ClassVar[ResultRows]
SWEEP_STATE_UNSPECIFIED: SweepState
SWEEP_STATE_QUEUED: SweepState
SWEEP_STATE_RUNNING: SweepState
SWEEP_STATE_SUCCEEDED: SweepState
SWEEP_STATE_FAILED: SweepState
SWEEP_STATE_CANCELLED: SweepState
RESULT_ROWS_UNSPECIFIED: ResultRows
RESULT_ROWS_ALL: ResultRows
RESULT_ROWS_SUMMARIES_ONLY: ResultRows

class Objective(_message.Message):
    __slots__ = ("kpi", "maximize")
    KPI_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    kpi: str
    maximize: bool
    def __init__(self, kpi: _Optional[str] = ..., maximize: _Optional[bool] = ...) -> None: ...

class SweepSpec(_message.Message):
    __slots__ = ("model", "twins", "sampler", "ranges", "samples", "replicates", "overrides", "input_noise", "input_schedule", "horizon_s", "step_s", "integrator", "seed", "thresholds", "rows", "objective", "best_count")
    class RangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _simulation_pb2.ParameterRange
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_simulation_pb2.ParameterRange, _Mapping]] = ...) -> None: ...
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
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TWINS_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REPLICATES_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    INPUT_NOISE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_S_FIELD_NUMBER: _ClassVar[int]
    STEP_S_FIELD_NUMBER: _ClassVar[int]
    INTEGRATOR_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    BEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    model: str
    twins: _simulation_pb2.TwinSelection
    sampler: _simulation_pb2.Sampler
    ranges: _containers.MessageMap[str, _simulation_pb2.ParameterRange]
    samples: int
    replicates: int
    overrides: _containers.ScalarMap[str, float]
    input_noise: _containers.ScalarMap[str, float]
    input_schedule: _containers.RepeatedCompositeFieldContainer[_simulation_pb2.InputStep]
    horizon_s: float
    step_s: float
    integrator: _simulation_pb2.Integrator
    seed: int
    thresholds: _containers.ScalarMap[str, float]
    rows: ResultRows
    objective: Objective
    best_count: int
    def __init__(self, model: _Optional[str] = ..., twins: _Optional[_Union[_simulation_pb2.TwinSelection, _Mapping]] = ..., sampler: _Optional[_Union[_simulation_pb2.Sampler, str]] = ..., ranges: _Optional[_Mapping[str, _simulation_pb2.ParameterRange]] = ..., samples: _Optional[int] = ..., replicates: _Optional[int] = ..., overrides: _Optional[_Mapping[str, float]] = ..., input_noise: _Optional[_Mapping[str, float]] = ..., input_schedule: _Optional[_Iterable[_Union[_simulation_pb2.InputStep, _Mapping]]] = ..., horizon_s: _Optional[float] = ..., step_s: _Optional[float] = ..., integrator: _Optional[_Union[_simulation_pb2.Integrator, str]] = ..., seed: _Optional[int] = ..., thresholds: _Optional[_Mapping[str, float]] = ..., rows: _Optional[_Union[ResultRows, str]] = ..., objective: _Optional[_Union[Objective, _Mapping]] = ..., best_count: _Optional[int] = ...) -> None: ...

class KpiSummary(_message.Message):
    __slots__ = ("name", "mean", "min", "max", "p05", "p50", "p95", "missing", "bin_edges", "counts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    P05_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean: float
    min: float
    max: float
    p05: float
    p50: float
    p95: float
    missing: int
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., mean: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., p05: _Optional[float] = ..., p50: _Optional[float] = ..., p95: _Optional[float] = ..., missing: _Optional[int] = ..., bin_edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class BestScenario(_message.Message):
    __slots__ = ("scenario", "twin_id", "point", "replicate", "seed", "values", "objective")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    REPLICATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    scenario: int
    twin_id: str
    point: int
    replicate: int
    seed: int
    values: _containers.ScalarMap[str, float]
    objective: float
    def __init__(self, scenario: _Optional[int] = ..., twin_id: _Optional[str] = ..., point: _Optional[int] = ..., replicate: _Optional[int] = ..., seed: _Optional[int] = ..., values: _Optional[_Mapping[str, float]] = ..., objective: _Optional[float] = ...) -> None: ...

class Sensitivity(_message.Message):
    __slots__ = ("variable", "kpi", "correlation")
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    KPI_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    variable: str
    kpi: str
    correlation: float
    def __init__(self, variable: _Optional[str] = ..., kpi: _Optional[str] = ..., correlation: _Optional[float] = ...) -> None: ...

class SweepSummary(_message.Message):
    __slots__ = ("kpis", "best", "sensitivity", "diverged")
    KPIS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    kpis: _containers.RepeatedCompositeFieldContainer[KpiSummary]
    best: _containers.RepeatedCompositeFieldContainer[BestScenario]
    sensitivity: _containers.RepeatedCompositeFieldContainer[Sensitivity]
    diverged: int
    def __init__(self, kpis: _Optional[_Iterable[_Union[KpiSummary, _Mapping]]] = ..., best: _Optional[_Iterable[_Union[BestScenario, _Mapping]]] = ..., sensitivity: _Optional[_Iterable[_Union[Sensitivity, _Mapping]]] = ..., diverged: _Optional[int] = ...) -> None: ...

class SweepResults(_message.Message):
    __slots__ = ("uri", "part_count", "bytes", "rows")
    URI_FIELD_NUMBER: _ClassVar[int]
    PART_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    uri: str
    part_count: int
    bytes: int
    rows: ResultRows
    def __init__(self, uri: _Optional[str] = ..., part_count: _Optional[int] = ..., bytes: _Optional[int] = ..., rows: _Optional[_Union[ResultRows, str]] = ...) -> None: ...

class Sweep(_message.Message):
    __slots__ = ("sweep_id", "state", "submitter", "request_id", "spec", "create_time", "start_time", "end_time", "scenarios_total", "scenarios_done", "chunks_total", "chunks_done", "attempts", "failure_reason", "revision", "summary", "results", "provenance_json", "retried_chunks")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRIED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    state: SweepState
    submitter: str
    request_id: str
    spec: SweepSpec
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    scenarios_total: int
    scenarios_done: int
    chunks_total: int
    chunks_done: int
    attempts: int
    failure_reason: str
    revision: int
    summary: SweepSummary
    results: SweepResults
    provenance_json: str
    retried_chunks: int
    def __init__(self, sweep_id: _Optional[str] = ..., state: _Optional[_Union[SweepState, str]] = ..., submitter: _Optional[str] = ..., request_id: _Optional[str] = ..., spec: _Optional[_Union[SweepSpec, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scenarios_total: _Optional[int] = ..., scenarios_done: _Optional[int] = ..., chunks_total: _Optional[int] = ..., chunks_done: _Optional[int] = ..., attempts: _Optional[int] = ..., failure_reason: _Optional[str] = ..., revision: _Optional[int] = ..., summary: _Optional[_Union[SweepSummary, _Mapping]] = ..., results: _Optional[_Union[SweepResults, _Mapping]] = ..., provenance_json: _Optional[str] = ..., retried_chunks: _Optional[int] = ...) -> None: ...

class SubmitSweepRequest(_message.Message):
    __slots__ = ("spec", "request_id", "submitter")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    spec: SweepSpec
    request_id: str
    submitter: str
    def __init__(self, spec: _Optional[_Union[SweepSpec, _Mapping]] = ..., request_id: _Optional[str] = ..., submitter: _Optional[str] = ...) -> None: ...

class SubmitSweepResponse(_message.Message):
    __slots__ = ("sweep", "created")
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    created: bool
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetSweepRequest(_message.Message):
    __slots__ = ("sweep_id",)
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    def __init__(self, sweep_id: _Optional[str] = ...) -> None: ...

class GetSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ...) -> None: ...

class ListSweepsRequest(_message.Message):
    __slots__ = ("states", "submitter", "page")
    STATES_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[SweepState]
    submitter: str
    page: _types_pb2.PageRequest
    def __init__(self, states: _Optional[_Iterable[_Union[SweepState, str]]] = ..., submitter: _Optional[str] = ..., page: _Optional[_Union[_types_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListSweepsResponse(_message.Message):
    __slots__ = ("sweeps", "page")
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[Sweep]
    page: _types_pb2.PageResponse
    def __init__(self, sweeps: _Optional[_Iterable[_Union[Sweep, _Mapping]]] = ..., page: _Optional[_Union[_types_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class WatchSweepRequest(_message.Message):
    __slots__ = ("sweep_id", "after_revision")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    after_revision: int
    def __init__(self, sweep_id: _Optional[str] = ..., after_revision: _Optional[int] = ...) -> None: ...

class WatchSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ...) -> None: ...

class CancelSweepRequest(_message.Message):
    __slots__ = ("sweep_id",)
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    def __init__(self, sweep_id: _Optional[str] = ...) -> None: ...

class CancelSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ...) -> None: ...

class ReadSweepResultsRequest(_message.Message):
    __slots__ = ("sweep_id", "first_part")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_PART_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    first_part: int
    def __init__(self, sweep_id: _Optional[str] = ..., first_part: _Optional[int] = ...) -> None: ...

class ReadSweepResultsResponse(_message.Message):
    __slots__ = ("part", "part_index", "offset", "data", "last_piece")
    PART_FIELD_NUMBER: _ClassVar[int]
    PART_INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_PIECE_FIELD_NUMBER: _ClassVar[int]
    part: str
    part_index: int
    offset: int
    data: bytes
    last_piece: bool
    def __init__(self, part: _Optional[str] = ..., part_index: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last_piece: _Optional[bool] = ...) -> None: ...

class RunSweepRequest(_message.Message):
    __slots__ = ("spec", "request_id", "submitter")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTER_FIELD_NUMBER: _ClassVar[int]
    spec: SweepSpec
    request_id: str
    submitter: str
    def __init__(self, spec: _Optional[_Union[SweepSpec, _Mapping]] = ..., request_id: _Optional[str] = ..., submitter: _Optional[str] = ...) -> None: ...

class RunSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: Sweep
    def __init__(self, sweep: _Optional[_Union[Sweep, _Mapping]] = ...) -> None: ...
