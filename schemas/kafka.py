"""Kafka connection settings, one model for every client in the project (secrets unwrapped only when a client
is built)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["KafkaConnection"]


class KafkaConnection(BaseModel):
    """How to reach a Kafka cluster: shared by the edge uplink (kafka-python) and the stream workers (faust)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(description="host:port[,host:port...]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL") and not (self.sasl_mechanism and self.sasl_username
                                                              and self.sasl_password):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        return self

    def producer_config(self) -> dict[str, Any]:
        """Connection keyword arguments for kafka-python's producer, consumer and admin client."""
        cfg: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            cfg |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                    "sasl_plain_password": self._password()}
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                cfg[name] = str(getattr(self, name))
        return cfg

    def _password(self) -> str | None:
        return self.sasl_password.get_secret_value() if self.sasl_password is not None else None

    def faust_settings(self) -> dict[str, Any]:
        """``broker`` and ``broker_credentials`` for a faust App (aiokafka underneath)."""
        import ssl

        import faust

        servers = ";".join(f"kafka://{s.strip()}" for s in self.bootstrap_servers.split(","))
        out: dict[str, Any] = {"broker": servers}
        context = None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
            if self.ssl_certfile:
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        if self.security_protocol.startswith("SASL"):
            out["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username, password=self._password(),
                mechanism=self.sasl_mechanism, ssl_context=context)
        elif context is not None:
            out["broker_credentials"] = faust.SSLCredentials(context)
        return out
