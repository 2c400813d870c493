"""``python -m twinstack.simulation``: runs the simulation service."""

import asyncio

from twinstack.common.server import serve
from twinstack.simulation.app import SimulationApp
from twinstack.simulation.settings import SimulationSettings


def main() -> None:
    settings = SimulationSettings()
    asyncio.run(serve(settings, SimulationApp(settings), name="simulation"))


if __name__ == "__main__":
    main()
