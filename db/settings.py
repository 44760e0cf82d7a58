"""All configuration in one place: environment variables with the ``FATURE_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    """Fature's settings, read once from the environment (and an optional ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="FATURE_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, description="The robust database. Unset: an embedded PostgreSQL is started."
    )
    operation_database_url: str | None = Field(
        default=None, description="The operation database the ETL reads (read-only is enough)."
    )
    timezone: str = Field(default="America/Sao_Paulo", description="The business time zone.")
    redis_url: str | None = Field(default=None, description="Redis for cache and rate limits.")
    data_dir: Path = Field(default=Path(".fature"), description="Embedded PostgreSQL data.")

    # ETL
    etl_overlap_minutes: int = Field(default=10, ge=0, le=24 * 60)
    etl_interval_minutes: int = Field(default=15, ge=1, le=24 * 60)
    etl_scheduler_enabled: bool = True
    etl_daily_at: str = "00:30"
    etl_full_day_of_week: str = "sun"
    etl_full_at: str = "03:00"
    etl_misfire_grace_seconds: int = Field(default=300, ge=1)
    etl_max_amount: str = Field(
        default="10000000.00", description="Source amounts above this are held as anomalies."
    )

    # API
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_page_size: int = Field(default=100, ge=1, le=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url", "operation_database_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        if value:
            try:
                url = make_url(value)
            except Exception as exc:  # noqa: BLE001 - sqlalchemy raises several kinds
                raise ValueError("not a database URL") from exc
            if not url.drivername.startswith("postgres"):
                raise ValueError(f"only PostgreSQL is supported, got {url.drivername!r}")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def async_url(url: str) -> str:
    """``postgresql://...`` (any driver) -> the SQLAlchemy asyncpg URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """Any SQLAlchemy PostgreSQL URL -> the libpq/asyncpg form ``postgresql://...``."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def masked_url(url: str) -> str:
    """The URL with its password hidden, safe for messages and logs."""
    try:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparsable URL>"
