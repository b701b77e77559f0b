"""PLC connection settings: endpoint, tag node ids, security, guard limits and timings.

Node ids follow one scheme: a tag written as ``s=Line1.SpeedLimitPct`` (no namespace part) lives
in ``namespace_uri``, whose index is looked up on the server at connect, so the same config works
on PLCs that number their namespaces differently. A tag written with an explicit namespace
(``ns=3;s=...`` or ``nsu=urn:...;s=...``) is used as it stands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_NODE_ID = r"^((ns=\d+|nsu=[^;]+);)?(s=.+|i=\d+|g=[0-9A-Fa-f-]{36}|b=.+)$"


class PlcTags(BaseModel):
    """Node id of every tag in the contract (see ``foresight.plc.tags``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speed_limit_pct: str = Field("s=Line1.SpeedLimitPct", pattern=_NODE_ID)
    heartbeat: str = Field("s=Line1.Heartbeat", pattern=_NODE_ID)
    alarm_state: str = Field("s=Line1.AlarmState", pattern=_NODE_ID)
    enable: str = Field("s=Line1.Enable", pattern=_NODE_ID)
    line_state: str = Field("s=Line1.LineState", pattern=_NODE_ID)
    operator_setpoint: str = Field("s=Line1.OperatorSetpoint", pattern=_NODE_ID)
    actual_speed: str = Field("s=Line1.ActualSpeed", pattern=_NODE_ID)


class PlcConfig(BaseModel):
    """OPC UA connection to the line's PLC (credentials only from the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = Field(None, description="opc.tcp://host:port/path; none = no PLC")
    username: str | None = None
    password: SecretStr | None = None
    namespace_uri: str = Field("urn:foresight:line", min_length=1)
    tags: PlcTags = PlcTags()
    security_policy: Literal["None", "Basic256Sha256"] = "Basic256Sha256"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = Field(None, description="this client's certificate (DER or PEM)")
    private_key: Path | None = Field(None, description="this client's private key (PEM)")
    server_certificate: Path | None = Field(None, description="the PLC's certificate, pinned")
    trust_store: Path | None = Field(None, description="folder of trusted server/CA certificates")
    allow_insecure: bool = Field(False, description="permit security_policy None")
    heartbeat_s: float = Field(0.5, gt=0, le=60)
    heartbeat_timeout_s: float = Field(2.0, gt=0, le=600, description="PLC watchdog (simulator)")
    min_limit_pct: float = Field(30.0, ge=0, le=100)
    max_step_pct_per_s: float = Field(
        50.0, gt=0, description="fastest rise of SpeedLimitPct (restoring speed), % per s"
    )
    max_drop_pct_per_s: float = Field(
        100.0,
        gt=0,
        description="fastest fall of SpeedLimitPct (slowing down, the protective direction), "
        "% per s; at the default heartbeat the alarm engine's slow-down is one write",
    )
    dry_run: bool = Field(False, description="shadow mode: read and log, never write")
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)
    timeout_s: float = Field(4.0, gt=0, le=120)

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("opc.tcp://"):
            raise ValueError("must start with opc.tcp://")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PlcConfig:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                f"security_policy {self.security_policy!r} and security_mode "
                f"{self.security_mode!r} disagree: use both 'None' or neither"
            )
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.heartbeat_timeout_s <= self.heartbeat_s:
            raise ValueError("heartbeat_timeout_s must be longer than heartbeat_s")
        return self

    def security_problem(self) -> str | None:
        """Why this config may not connect as it stands (checked at connect), or None."""
        if not self.secure:
            if self.allow_insecure:
                return None
            return (
                "plc.security_policy is None (no signing, no encryption) and plc.allow_insecure "
                "is false; configure Basic256Sha256 or allow no-security explicitly"
            )
        for key in ("certificate", "private_key", "server_certificate", "trust_store"):
            path = getattr(self, key)
            if path is None and key in ("certificate", "private_key"):
                return f"plc.{key} is not set (needed for {self.security_policy})"
            if path is not None and not path.exists():
                return f"plc.{key} {path} not found"
        if self.server_certificate is None and self.trust_store is None:
            return (
                "set plc.server_certificate or plc.trust_store: "
                "without one the PLC's identity is not checked"
            )
        return None

    @property
    def secure(self) -> bool:
        """True when the channel is signed (and possibly encrypted)."""
        return self.security_policy != "None"
