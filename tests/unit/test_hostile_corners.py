"""Corner cases that once reached INTERNAL (or worse) and are now refused with the field named:
wrapping grid sizes, nesting that exhausts Python's stack or parser, a kernel cache someone else
could write to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from twinstack.common.errors import InvalidArgumentError
from twinstack.common.times import duration_ns, timestamp_ns
from twinstack.modeling.document import ModelError, parse_model
from twinstack.modeling.expressions import ExpressionError, parse_expression
from twinstack.registry.twins import parse_merge_patch
from twinstack.simulation.compiler import kernel_spec, private_directory
from twinstack.simulation.kernels import BUILTIN_MODELS
from twinstack.simulation.sampling import Sampler, point_count
from twinstack.simulation.sweep import Limits, SweepSpec, Target, spec_violations

LIMITS = Limits(max_scenarios=10_000_000, max_steps=1_000_000, scenarios_per_task=1000)


def test_grid_sizes_are_exact_integers_and_never_wrap() -> None:
    # In int64, 65536^4 = 2^64 wraps to 0 and passed max_scenarios.
    assert point_count(Sampler.GRID, 0, [65536] * 4) == 2**64
    target = Target.of_builtin(BUILTIN_MODELS["pump_thermal"])
    name = target.variables[0].name
    low, high = target.variables[0].minimum or 0.0, target.variables[0].maximum or 1.0
    spec = SweepSpec(
        horizon_s=10.0,
        step_s=1.0,
        sampler=Sampler.GRID,
        ranges={name: (low, high, 65536)}
        | {v.name: (v.minimum or 0.0, v.maximum or 1.0, 65536) for v in target.variables[1:4]},
    )
    violations = spec_violations(spec, target, 1, LIMITS)
    assert any("TWINSTACK_MAX_SCENARIOS" in v.description for v in violations)


def test_scenario_steps_and_result_bytes_are_budgeted() -> None:
    target = Target.of_builtin(BUILTIN_MODELS["pump_thermal"])
    first = target.variables[0]
    swept = {first.name: (first.minimum or 0.0, first.maximum or 1.0, 0)}
    long_run = SweepSpec(horizon_s=1_000_000.0, step_s=1.0, samples=1_000_000, ranges=swept)
    tight = Limits(10_000_000, 1_000_000, 1000, max_scenario_steps=10**11)
    assert any(
        "TWINSTACK_MAX_SCENARIO_STEPS" in v.description
        for v in spec_violations(long_run, target, 1, tight)
    )
    small_results = Limits(10_000_000, 1_000_000, 1000, max_result_bytes=1000)
    few = SweepSpec(horizon_s=10.0, step_s=1.0, samples=100, ranges=swept)
    assert any(
        "TWINSTACK_MAX_SWEEP_RESULT_BYTES" in v.description
        for v in spec_violations(few, target, 1, small_results)
    )


@pytest.mark.parametrize("depth", [300, 900, 5000])
def test_merge_patches_deeper_than_any_schema_are_refused(depth: int) -> None:
    text = '{"p":' * depth + "1" + "}" * depth
    with pytest.raises(InvalidArgumentError) as refused:
        parse_merge_patch(text)
    assert refused.value.violations[0].field == "json_merge_patch"


def test_a_patch_as_deep_as_a_schema_allows_passes() -> None:
    assert parse_merge_patch(json.dumps({"component": {"a": {"b": {"c": 1}}}}))


@pytest.mark.parametrize(
    "text",
    [
        "x" + "^x" * 200,
        "-" * 300 + "x",
        "(" * 300 + "x" + ")" * 300,
        "sin(" * 60 + "x" + ")" * 60,
    ],
)
def test_expressions_nested_past_the_limits_are_refused_at_parse(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_long_flat_sums_still_compile() -> None:
    """A sum of 150 terms nests one level deep as compiled, however long the chain."""
    term = " + ".join(["x"] * 150)
    model = parse_model(
        {
            "id": "dtmi:test:LongSum;1",
            "dynamics": {"states": {"x": {"initial": 1.0}}, "equations": {"x": f"-({term}) / 150"}},
        }
    )
    source = kernel_spec(model.dynamics).source
    depth = deepest = 0
    for character in source:
        depth += {"(": 1, ")": -1}.get(character, 0)
        deepest = max(deepest, depth)
    assert deepest < 20, "the chain is written flat, not 150 parentheses deep"
    compile(source, "kernel", "exec")


def test_squared_subexpressions_do_not_double_the_source() -> None:
    # ((x^2)^2)^2... written as products would double the source at every level.
    text = "(" * 30 + "x" + ")^2" * 30
    model = parse_model(
        {
            "id": "dtmi:test:Squares;1",
            "dynamics": {"states": {"x": {"initial": 0.5}}, "equations": {"x": f"-({text})"}},
        }
    )
    assert len(kernel_spec(model.dynamics).source) < 100_000


def test_a_reserved_series_name_is_refused_in_models() -> None:
    with pytest.raises(ModelError) as refused:
        parse_model(
            {
                "id": "dtmi:test:Sly;1",
                "telemetry": {"twin_id": "string"},
                "dynamics": {
                    "states": {"quantile": {"initial": 0}},
                    "equations": {"quantile": "1"},
                },
            }
        )
    fields = {v.field for v in refused.value.violations}
    assert {".telemetry.twin_id", ".dynamics.states.quantile"} <= fields


def test_timestamps_and_durations_out_of_range_name_the_field() -> None:
    from google.protobuf import duration_pb2, timestamp_pb2

    with pytest.raises(InvalidArgumentError) as bad_time:
        timestamp_ns(timestamp_pb2.Timestamp(seconds=1, nanos=-1), "start_time")
    assert bad_time.value.violations[0].field == "start_time"
    with pytest.raises(InvalidArgumentError):
        timestamp_ns(timestamp_pb2.Timestamp(seconds=2**40), "end_time")
    with pytest.raises(InvalidArgumentError):
        duration_ns(duration_pb2.Duration(seconds=1, nanos=-5), "window")
    assert timestamp_ns(timestamp_pb2.Timestamp(seconds=1, nanos=5), "t") == 10**9 + 5


def test_the_kernel_cache_must_be_private(tmp_path: Path) -> None:
    mine = private_directory(tmp_path / "kernels")
    assert (mine.stat().st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        private_directory(shared)
    if os.getuid() == 0:  # only root can give a directory away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 12345, 12345)
        with pytest.raises(PermissionError, match="belongs to uid 12345"):
            private_directory(theirs)
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(PermissionError, match="not a plain directory"):
        private_directory(link)
