"""Live twin state, kept current from the TELEMETRY stream and stored in JetStream KV."""
