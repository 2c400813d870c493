"""The model language shared by the registry (validation), ingestion (telemetry checks) and
simulation (compiling dynamics): :mod:`document` parses model documents, :mod:`expressions` the
whitelisted expression grammar, :mod:`units` checks dimensions, :mod:`resolve` merges
inheritance and validates twins, :mod:`values` checks and converts property values, and
:mod:`export` writes models back as documents."""
