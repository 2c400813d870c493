"""The twin registry: models, twins and their relationships, stored in JetStream KV."""
