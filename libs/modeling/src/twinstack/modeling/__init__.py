"""The model language shared by the registry (validation), ingestion (telemetry checks) and
simulation (compiling dynamics): :mod:`document` parses model documents, :mod:`expressions` the
whitelisted expression grammar, :mod:`units` checks dimensions, :mod:`resolve` merges
inheritance and validates twins and :mod:`values` checks and converts property values.

It depends on no server-side package, so the CLI can validate models offline."""
