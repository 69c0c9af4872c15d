"""Central settings: the stream workers, the reconciler, the archive sync and the tools that talk to the same topics.

One file per deployment (``deploy/examples/worker.yaml``), with the environment over it: ``CEMS_STREAM__KAFKA__
SASL_PASSWORD=...`` sets ``kafka.sasl_password``, so secrets stay out of files (a systemd ``EnvironmentFile``, a
container secret), and a worker can run from the environment alone. The environment layer is pydantic-settings'
(``env_nested_delimiter="__"``); :func:`schemas.configfile.load_settings` reads the file and names, for every
problem, the file's line or the variable it came from.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.configfile import load_settings, yaml_env_first
from schemas.kafka import KafkaConnection
from schemas.site import Entity, load_site
from streams.core.processor import Settings
from streams.core.reconcile import ReconcilePolicy

__all__ = ["ENV_PREFIX", "MAX_STATE_BYTES", "InfluxSettings", "ReconcileSettings", "Topics", "WorkerConfig",
           "load_sites", "load_worker_config"]

#: Largest record of the state topic (its max.message.bytes): well above a state piece, with room to raise it.
MAX_STATE_BYTES = 64 * 2**20
#: Environment variables with this prefix override the config file (``CEMS_STREAM__KAFKA__SASL_PASSWORD``...).
ENV_PREFIX = "CEMS_STREAM__"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_Strict):
    readings: str = "cems.readings.v1"
    dead_letter: str = "cems.readings.dlq"
    hourly: str = "cems.hourly.v1"
    monthly: str = "cems.monthly.v1"
    gaps: str = "cems.gaps.v1"
    state: str = Field(default="cems.worker-state.v1", description="Compacted; as many partitions as readings.")
    accounting: str = Field(default="cems.accounting.v1", description="Self-reported monthly accounting reports.")
    alerts: str = Field(default="cems.alerts.v1", description="Discrepancy and data-quality alerts (compacted).")
    alert_acks: str = Field(default="cems.alerts.ack.v1", description="Acknowledgements of alerts (compacted).")
    qa: str = Field(default="cems.qa.v1", description="QA records of the monitors (compacted; cems qa import).")
    indicators: str = Field(default="cems.indicators.v1", description="Hour partials of the indicators per source "
                            "and UTC day (compacted; what the reconciler reads instead of minutes).")

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """Every topic under ``prefix`` (``<prefix>.readings`` ...): one isolated set per test, bench or tenant."""
        return cls(**{name: f"{prefix}.{name}" for name in cls.model_fields})


class InfluxSettings(_Strict):
    url: str
    org: str
    bucket: str
    token: SecretStr


class ReconcileSettings(_Strict):
    """What the reconciler needs besides the data: thresholds, which meter measures what, each stack's CO2max."""

    policy: ReconcilePolicy = ReconcilePolicy()
    meters: dict[str, str] = Field(default_factory=dict, description=(
        '"<source>/<channel>" -> "fuel:<fuel id>", "material:<material id>" or "product": what an edge meter '
        "measures (totalisers: month = last - first; rates per hour: integrated)."))
    co2max: dict[str, str | float] = Field(default_factory=dict, description=(
        "Source -> fuel family (coal, natural_gas, ...) or CO2max [vol %] for the CO2/O2 check; sources with "
        "process CO2 need a value calibrated on trusted history (streams.kernels.indicators.effective_co2max)."))
    intake_token: SecretStr | None = Field(default=None, description=(
        "Bearer token `cems accounting serve` requires (CEMS_STREAM__RECONCILE__INTAKE_TOKEN); none: open."))
    agent_entities: dict[str, str] = Field(default_factory=dict, description=(
        "Agent id -> entity id, to place dead letters and gap reports (otherwise the batch's claimed source)."))


class WorkerConfig(BaseSettings):
    """Settings of the central roles. Fields: below; every one can come from ``CEMS_STREAM__<FIELD>__<SUBFIELD>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True,
                                      case_sensitive=False)

    kafka: KafkaConnection
    app_id: str = Field(default="cems-stream", description="Consumer group: workers with one app_id share partitions.")
    topics: Topics = Topics()
    sites: list[Path] = Field(min_length=1, description="Site files (or directories of *.yaml) of registered sources.")
    keys_dir: Path = Field(description="Directory of <agent id>.key files (agent enrolment).")
    influx: InfluxSettings | None = None
    processing: Settings = Settings()
    chunk: int = Field(default=2000, gt=0, description="Messages per faust take() batch.")
    within_s: float = Field(default=0.5, gt=0, description="Longest wait to fill a chunk.")
    snapshot_interval_s: float = Field(default=5.0, gt=0, description="Checkpoint period; also the replay window.")
    session_timeout_s: float = Field(default=15.0, gt=1, description="A killed worker's partitions move after this.")
    datadir: Path = Path("/var/lib/cems/worker")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description=(
        "Prometheus metrics of the worker or the reconciler on http://metrics_address:metrics_port/metrics; None: "
        "none. Two roles on one host: set it per process (CEMS_STREAM__METRICS_PORT)."))
    metrics_address: str = Field(default="127.0.0.1", description="Where the metrics listen (0.0.0.0 in a container).")
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings,
                                         description="For `cems reconcile` (the worker ignores it).")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment over the file (:func:`schemas.configfile.yaml_env_first`)."""
        return yaml_env_first(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings)


def load_worker_config(path: str | Path | None) -> WorkerConfig:
    """The file (if any) with the ``CEMS_STREAM__*`` environment over it; errors name the line or the variable."""
    return load_settings(path, WorkerConfig)


def load_sites(paths: list[Path]) -> list[Entity]:
    """The entities of site files, or of directories of ``*.yaml`` / ``*.yml``."""
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p]
    return [load_site(f) for f in files]
