"""``python -m twinstack.state``: runs the state service."""

import asyncio

from twinstack.common.server import serve
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings


def main() -> None:
    settings = StateSettings()
    asyncio.run(serve(settings, StateApp(settings), name="state"))


if __name__ == "__main__":
    main()
