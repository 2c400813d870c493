"""The ``twinstack`` command-line interface (installed with ``twinstack-sdk[cli]``)."""

from __future__ import annotations

import sys


def main() -> None:
    """Runs the CLI; says how to get it when the ``cli`` extra is not installed."""
    try:
        from twinstack.cli.main import run
    except ImportError as error:
        sys.stderr.write(
            f"twinstack: the CLI needs the 'cli' extra ({error.name} is missing): "
            "pip install 'twinstack-sdk[cli]'\n"
        )
        raise SystemExit(2) from None
    run()
