"""The device gateway: readings from MQTT, Sparkplug B and OPC UA into the telemetry pipeline,
and desired values and commands back to the devices."""
