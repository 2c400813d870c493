"""The ``twinstack`` command-line interface."""
