"""The SDK's public surface is small, and every public name and call is documented."""

from __future__ import annotations

import inspect

import twinstack.sdk
from twinstack.sdk import AsyncClient, Client

AREAS = ("registry", "telemetry", "state", "simulation")


def public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def test_every_exported_name_is_documented() -> None:
    undocumented = [
        name for name in twinstack.sdk.__all__ if not inspect.getdoc(getattr(twinstack.sdk, name))
    ]
    assert undocumented == []


def test_every_call_of_both_clients_is_documented_and_they_match() -> None:
    sync = Client()
    try:
        for area in AREAS:
            sync_calls = public_methods(type(getattr(sync, area)))
            async_calls = public_methods(_async_area(area))
            assert sorted(sync_calls) == sorted(async_calls), area
            assert len(sync_calls) >= 3
            for name, method in sync_calls.items():
                doc = inspect.getdoc(method) or ""
                assert len(doc) > 20, f"{area}.{name} needs a docstring"
    finally:
        sync.close()
    assert (
        sorted(public_methods(Client)) == sorted(public_methods(AsyncClient)) == ["close", "health"]
    )


def _async_area(area: str) -> type:
    from twinstack.sdk import _registry, _simulation, _state, _telemetry

    return {
        "registry": _registry.AsyncRegistry,
        "telemetry": _telemetry.AsyncTelemetry,
        "state": _state.AsyncState,
        "simulation": _simulation.AsyncSimulation,
    }[area]


def test_async_calls_are_coroutines_or_async_iterators() -> None:
    for area in AREAS:
        for name, method in public_methods(_async_area(area)).items():
            assert (
                inspect.iscoroutinefunction(method)
                or inspect.isasyncgenfunction(method)
                or (name.startswith(("list_", "query_twins")))
            ), f"{area}.{name}"
