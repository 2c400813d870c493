"""The operations guide documents every setting a service reads."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.settings import RegistrySettings
from twinstack.simulation.settings import SimulationSettings
from twinstack.state.settings import StateSettings

OPERATIONS = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


@pytest.mark.parametrize(
    "settings", [RegistrySettings, IngestionSettings, StateSettings, SimulationSettings]
)
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    missing = [
        f"TWINSTACK_{name.upper()}"
        for name in settings.model_fields
        if f"`TWINSTACK_{name.upper()}`" not in OPERATIONS
    ]
    assert missing == []
