"""Which device data feeds which twin: the declarative mapping of Sparkplug B edge nodes and
devices, and of OPC UA servers' nodes, to twins and their fields (a YAML file,
``TWINSTACK_DEVICE_MAPPING_FILE``; docs/devices.md describes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twinstack.common.access import DEFAULT_TENANT

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SparkplugBinding(_Strict):
    """An edge node (``device`` unset) or one of its devices, feeding one twin.

    ``metrics`` maps Sparkplug metric names to the twin's fields; metrics it does not name are
    not forwarded. Without it, every metric whose name is a field of the twin's model is.
    """

    group: str = Field(min_length=1)
    edge_node: str = Field(min_length=1)
    device: str | None = None
    twin: str = Field(min_length=1)
    tenant: str = DEFAULT_TENANT
    metrics: dict[str, str] = Field(default_factory=dict)

    @property
    def device_id(self) -> str:
        tail = f"/{self.device}" if self.device else ""
        return f"spb:{self.group}/{self.edge_node}{tail}"

    def field_of(self, metric: str) -> str | None:
        if not self.metrics:
            return metric
        return self.metrics.get(metric)

    def metric_of(self, field: str) -> str | None:
        if not self.metrics:
            return field
        return next((m for m, f in self.metrics.items() if f == field), None)


class OpcUaItem(_Strict):
    """A node of an OPC UA server whose value is a twin's field."""

    node_id: str = Field(min_length=1)
    twin: str = Field(min_length=1)
    field: str = Field(min_length=1)
    # Desired values of the field are written to the node.
    writable: bool = False
    sampling_interval_ms: float | None = Field(default=None, ge=0)


class OpcUaEndpoint(_Strict):
    """An OPC UA server, how to log on to it, and the nodes to subscribe to."""

    endpoint: str = Field(pattern=r"^opc\.tcp://")
    tenant: str = DEFAULT_TENANT
    security_policy: SecurityPolicy = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    # The client's certificate and key (PEM or DER), needed with a security policy or to log
    # on with the certificate; the server's certificate, to trust it.
    certificate_file: Path | None = None
    private_key_file: Path | None = None
    server_certificate_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    # Logging on with a certificate (an X.509 identity token) instead of a user name.
    user_certificate_file: Path | None = None
    user_private_key_file: Path | None = None
    sampling_interval_ms: float = Field(default=500.0, ge=0)
    publishing_interval_ms: float = Field(default=500.0, gt=0)
    items: list[OpcUaItem] = Field(min_length=1)

    @model_validator(mode="after")
    def _credentials_complete(self) -> OpcUaEndpoint:
        if self.security_policy != "None" and (
            self.certificate_file is None or self.private_key_file is None
        ):
            raise ValueError(
                f"security policy {self.security_policy} needs certificate_file and "
                "private_key_file"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if (self.user_certificate_file is None) != (self.user_private_key_file is None):
            raise ValueError("user_certificate_file and user_private_key_file go together")
        if self.username is not None and self.user_certificate_file is not None:
            raise ValueError("log on with a user name or with a certificate, not both")
        return self

    @property
    def device_id(self) -> str:
        return f"opcua:{self.endpoint}"


class DeviceMapping(_Strict):
    sparkplug: list[SparkplugBinding] = Field(default_factory=list)
    opcua: list[OpcUaEndpoint] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> DeviceMapping:
        """The mapping in ``path`` (none: an empty one).

        Raises:
            ValueError: The file is not a valid mapping, saying where.
        """
        if path is None:
            return cls()
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()) or {})
        except (OSError, yaml.YAMLError, ValidationError) as error:
            raise ValueError(f"device mapping {path}: {error}") from error
