"""Telemetry ingestion: the validated front door to the TELEMETRY stream, and the historian
that persists the stream into InfluxDB."""
