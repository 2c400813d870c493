"""Shared runtime of the twinstack services.

Each module covers one concern: :mod:`settings` (typed configuration from ``TWINSTACK_*``),
:mod:`logs`, :mod:`tracing` (OpenTelemetry), :mod:`errors` (domain errors and their gRPC
statuses), :mod:`ids`, :mod:`nats` (connection, streams, KV buckets, subjects), :mod:`influx`
(the InfluxDB store) and :mod:`server` (the gRPC bootstrap every service runs on).
"""
