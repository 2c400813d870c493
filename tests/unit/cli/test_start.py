"""The ``twinstack`` CLI starts without the heavy imports only some of its commands need."""

from __future__ import annotations

import subprocess
import sys

# Each costs a noticeable part of a second or more at every start of every command.
HEAVY_MODULES = ("pandas", "pyarrow", "matplotlib", "numba", "ray", "httpx")


def test_the_cli_starts_without_heavy_imports() -> None:
    # A fresh interpreter: this test process has long imported all of them.
    probe = (
        "import sys, twinstack.cli.main; "
        f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split()
    assert loaded == []


def test_a_sparkline_of_fewer_values_than_columns_has_one_column_each() -> None:
    from twinstack.cli.telemetry import sparkline

    assert len(sparkline([1.0, 2.0], 40)) == 2
    assert len(sparkline([float(i) for i in range(400)], 40)) == 40
    assert sparkline([], 40) == ""
