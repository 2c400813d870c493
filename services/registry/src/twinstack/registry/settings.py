"""Registry settings (``TWINSTACK_*``)."""

from pydantic import Field

from twinstack.common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    max_properties_per_twin: int = Field(default=1024, gt=0)
    # Twins one tenant may hold (docs/limits.md#tenant-quotas).
    tenant_max_twins: int = Field(default=10_000_000, gt=0)
    # Longest a read with min_revision waits for the index to catch up with that revision.
    read_your_write_wait_s: float = Field(default=5.0, gt=0)
    # Most twins one graph traversal may visit before the query is refused as too broad.
    query_max_traversal_twins: int = Field(default=100_000, gt=0)
    # Most twins one page of QueryTwins looks at; a page cut short by it carries a continuation
    # token (and may hold fewer twins than asked for).
    query_max_scanned_twins: int = Field(default=50_000, gt=0)
    # Bounds on one CreateModels request (docs/limits.md).
    max_model_source_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_models_per_request: int = Field(default=10_000, gt=0)
    max_dtdl_schema_nodes: int = Field(default=1_000_000, gt=0)
    max_import_notes: int = Field(default=10_000, gt=0)
