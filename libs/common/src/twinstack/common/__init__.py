"""Shared runtime of the twinstack services.

Each module covers one concern: :mod:`settings` (typed configuration from ``TWINSTACK_*``),
:mod:`logs`, :mod:`tracing` (OpenTelemetry), :mod:`errors` (domain errors and their gRPC
statuses), :mod:`ids`, :mod:`values` (typed values and their validation), :mod:`pagination`,
:mod:`nats` (connection, streams, KV buckets, subjects, KV documents), :mod:`consumer` (the
durable pull-consumer loop), :mod:`directory` (the KV-watch-fed view of the registry's twins),
:mod:`influx` (the InfluxDB store) and :mod:`server` (the gRPC bootstrap every service runs on).
"""
