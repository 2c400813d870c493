"""The operations guide documents every setting a service reads."""

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.settings import RegistrySettings
from twinstack.simulation.settings import SimulationSettings
from twinstack.state.settings import StateSettings

OPERATIONS = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()


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


def test_every_variable_the_operations_guide_names_is_read_by_something() -> None:
    import re

    from twinstack.cli.shared import DATA_DIR_VARIABLE
    from twinstack.sdk.config import ENVIRONMENT_VARIABLES

    read = {*ENVIRONMENT_VARIABLES, DATA_DIR_VARIABLE}
    for settings in (RegistrySettings, IngestionSettings, StateSettings, SimulationSettings):
        read |= {f"TWINSTACK_{name.upper()}" for name in settings.model_fields}
    documented = set(re.findall(r"`(TWINSTACK_[A-Z0-9_]+)`", OPERATIONS))
    assert len(documented) > 50
    assert sorted(documented - read) == []
    assert sorted(n for n in ENVIRONMENT_VARIABLES if f"`{n}`" not in OPERATIONS) == []


LIMITS = (Path(__file__).resolve().parents[3] / "docs" / "limits.md").read_text()
SOURCES = Path(__file__).resolve().parents[3]


def test_every_limit_named_in_an_error_is_in_the_limits_page() -> None:
    import re

    named: set[str] = set()
    for folder in ("services", "libs"):
        for path in (SOURCES / folder).rglob("*.py"):
            text = path.read_text()
            named |= set(re.findall(r'limit="(TWINSTACK_[A-Z_]+)"', text))
            named |= set(re.findall(r"\((TWINSTACK_[A-Z_]+)\)", text))
    assert len(named) > 10
    assert sorted(n for n in named if f"`{n}`" not in LIMITS) == []
