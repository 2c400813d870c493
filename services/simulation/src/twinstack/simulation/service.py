"""The simulation service's gRPC surface: requests become domain calls, results responses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from twinstack.api.simulation.v1 import simulation_pb2, simulation_pb2_grpc
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.events import EventPublisher
from twinstack.common.ids import require_twin_id
from twinstack.common.influx import InfluxStore
from twinstack.common.times import timestamp_ns
from twinstack.simulation.calibration import CalibrationRequest, calibrate_twin
from twinstack.simulation.forecast import Forecast, run_forecast
from twinstack.simulation.kernels import BUILTIN_MODELS
from twinstack.simulation.scenario import run_scenario
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.snapshot import Snapshot, SnapshotTaker
from twinstack.simulation.sweep import Limits, SweepSpec
from twinstack.simulation.sweep_messages import integrator_of

SERVICE_NAME = simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name
DEFAULT_FORECAST_SAMPLES = 1000
DEFAULT_ALERT_PROBABILITY = 0.5


def _forecast_response(forecast: Forecast) -> simulation_pb2.ForecastResponse:
    response = simulation_pb2.ForecastResponse(
        forecast_id=forecast.forecast_id,
        model_id=forecast.model_id,
        points_written=forecast.points_written,
    )
    response.start_time.FromDatetime(forecast.started)
    for outlook in forecast.outlooks:
        twin_id = outlook.start.twin_id
        response.twins.append(
            simulation_pb2.TwinForecast(
                twin_id=twin_id,
                state_revision=outlook.start.state_revision,
                risks=[
                    simulation_pb2.ConditionRisk(
                        condition=risk.condition.name,
                        severity=risk.condition.severity,
                        message=risk.condition.message,
                        probability=risk.probability,
                        time_to_failure_p05_s=risk.time_to_failure_s[0],
                        time_to_failure_p50_s=risk.time_to_failure_s[1],
                        time_to_failure_p95_s=risk.time_to_failure_s[2],
                        alerted=(twin_id, risk.condition.name) in forecast.alerted,
                    )
                    for risk in outlook.risks
                ],
                times_s=outlook.times_s.tolist(),
                fans=[
                    simulation_pb2.Fan(
                        name=name,
                        p05=fan[0].tolist(),
                        p25=fan[1].tolist(),
                        p50=fan[2].tolist(),
                        p75=fan[3].tolist(),
                        p95=fan[4].tolist(),
                    )
                    for name, fan in outlook.fans.items()
                ],
            )
        )
    return response


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(
        self,
        settings: SimulationSettings,
        snapshots: SnapshotTaker,
        influx: InfluxStore,
        events: EventPublisher,
    ) -> None:
        self._settings = settings
        self._snapshots = snapshots
        self._influx = influx
        self._events = events
        self._limits = sweep_limits(settings)

    async def ListBuiltinModels(
        self, request: simulation_pb2.ListBuiltinModelsRequest, context: Any
    ) -> simulation_pb2.ListBuiltinModelsResponse:
        return simulation_pb2.ListBuiltinModelsResponse(
            models=[
                simulation_pb2.BuiltinModel(
                    name=model.name,
                    use_case=model.use_case,
                    description=model.description,
                    parameters=[
                        simulation_pb2.BuiltinParameter(name=name, default=d, min=low, max=high)
                        for name, (d, low, high) in model.parameters.items()
                    ],
                    kpis=list(model.kpis),
                )
                for model in BUILTIN_MODELS.values()
            ]
        )

    async def _snapshot(self, selection: simulation_pb2.TwinSelection) -> Snapshot:
        ids = await self._snapshots.twin_ids(selection.twin_ids, selection.query, "twins")
        return await self._snapshots.take(ids)

    async def RunScenario(
        self, request: simulation_pb2.RunScenarioRequest, context: Any
    ) -> simulation_pb2.RunScenarioResponse:
        spec = SweepSpec(
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            overrides=dict(request.overrides),
            input_noise=dict(request.input_noise),
            integrator=integrator_of(request.integrator),
            seed=request.seed,
            thresholds=dict(request.thresholds),
        )
        run = await run_scenario(
            await self._snapshot(request.twins),
            spec,
            max_points=request.max_points,
            limits=self._limits,
            max_trajectory_values=self._settings.max_trajectory_values,
        )
        return simulation_pb2.RunScenarioResponse(
            model_id=run.model_id,
            kernel=run.kernel_key,
            twins=[
                simulation_pb2.TwinScenario(
                    twin_id=twin.start.twin_id,
                    state_revision=twin.start.state_revision,
                    twin_revision=twin.start.twin_revision,
                    initial=twin.start.initial,
                    values=twin.values,
                    times_s=twin.times_s,
                    series=[
                        simulation_pb2.Series(name=name, values=values)
                        for name, values in twin.series.items()
                    ],
                    kpis=twin.kpis,
                )
                for twin in run.twins
            ],
        )

    async def Forecast(
        self, request: simulation_pb2.ForecastRequest, context: Any
    ) -> simulation_pb2.ForecastResponse:
        samples = request.samples or DEFAULT_FORECAST_SAMPLES
        if samples > self._settings.max_forecast_samples:
            raise InvalidArgumentError(
                "too many samples",
                [FieldViolation("samples", f"at most {self._settings.max_forecast_samples}")],
            )
        alert_probability = request.alert_probability or DEFAULT_ALERT_PROBABILITY
        if not 0 < alert_probability <= 1:
            raise InvalidArgumentError(
                "invalid alert probability",
                [FieldViolation("alert_probability", "between 0 (exclusive) and 1")],
            )
        spec = SweepSpec(
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            ranges={n: (r.min, r.max, 1) for n, r in request.uncertain.items()},
            samples=samples,
            input_noise=dict(request.input_noise),
            integrator=integrator_of(request.integrator),
            seed=request.seed,
        )
        forecast = await run_forecast(
            await self._snapshot(request.twins),
            spec,
            alert_probability=alert_probability,
            max_points=request.max_points,
            limits=self._limits,
            max_trajectory_values=self._settings.max_trajectory_values,
            influx=self._influx,
            events=self._events,
        )
        return _forecast_response(forecast)

    async def Calibrate(
        self, request: simulation_pb2.CalibrateRequest, context: Any
    ) -> simulation_pb2.CalibrateResponse:
        twin_id = require_twin_id(request.twin_id)
        integrator = integrator_of(request.integrator)
        for name in ("start_time", "end_time"):
            if request.HasField(name):
                timestamp_ns(getattr(request, name), name)
        end = (
            request.end_time.ToDatetime(UTC) if request.HasField("end_time") else datetime.now(UTC)
        )
        start = (
            request.start_time.ToDatetime(UTC)
            if request.HasField("start_time")
            else end - timedelta(hours=1)
        )
        result = await calibrate_twin(
            self._snapshots,
            self._influx,
            CalibrationRequest(
                twin_id, list(request.parameters), start, end, request.step_s or 1.0, integrator
            ),
            max_steps=self._settings.max_steps,
        )
        return simulation_pb2.CalibrateResponse(
            twin_id=twin_id,
            parameters=[
                simulation_pb2.FittedParameter(
                    name=name,
                    value=float(result.values[i]),
                    initial=float(result.initial[i]),
                    std_error=float(result.std_errors[i]),
                    min=result.bounds[i][0],
                    max=result.bounds[i][1],
                )
                for i, name in enumerate(result.names)
            ],
            fits=[
                simulation_pb2.FieldFit(
                    state=f.state,
                    field=f.field,
                    points=f.points,
                    rmse=f.rmse,
                    r_squared=f.r_squared,
                )
                for f in result.fits
            ],
            converged=result.converged,
            message=result.message,
            evaluations=result.evaluations,
        )


def sweep_limits(settings: SimulationSettings) -> Limits:
    """The bounds on sweeps, scenario runs and forecasts the settings give."""
    return Limits(
        max_scenarios=settings.max_scenarios,
        max_steps=settings.max_steps,
        scenarios_per_task=settings.scenarios_per_task,
        max_scenario_steps=settings.max_scenario_steps,
        max_result_bytes=settings.max_sweep_result_bytes,
    )
