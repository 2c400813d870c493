"""``python -m twinstack.registry``: runs the registry service."""

import asyncio

from twinstack.common.server import serve
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings


def main() -> None:
    settings = RegistrySettings()
    asyncio.run(serve(settings, RegistryApp(settings), name="registry"))


if __name__ == "__main__":
    main()
