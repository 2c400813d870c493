"""``python -m twinstack.ingestion``: runs the ingestion service (and its historian)."""

import asyncio

from twinstack.common.server import serve
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings


def main() -> None:
    settings = IngestionSettings()
    asyncio.run(serve(settings, IngestionApp(settings), name="ingestion"))


if __name__ == "__main__":
    main()
