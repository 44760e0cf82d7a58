"""All configuration in one place: environment variables with the ``FATURE_`` prefix."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
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
    now: datetime | None = Field(
        default=None,
        description="A fixed instant (ISO 8601 with offset) taken as now: tests and reproducible "
        "demos only (db/clock.py). Unset: the system clock.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for cache, rate limits and the ETL commit channel (etl/bus.py)."
    )
    data_dir: Path = Field(default=Path(".fature"), description="Embedded PostgreSQL data.")

    # ETL
    etl_overlap_minutes: int = Field(default=10, ge=0, le=24 * 60)
    etl_interval_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # false for `fature serve` in a cluster: `fature etl worker` schedules under its leader lock.
    etl_scheduler_enabled: bool = True
    etl_daily_at: str = "00:30"
    etl_full_day_of_week: str = "sun"
    etl_full_at: str = "03:00"
    etl_misfire_grace_seconds: int = Field(default=300, ge=1)
    etl_max_amount: str = Field(
        default="10000000.00", description="Source amounts above this are held as anomalies."
    )

    # Retention of affiliate_financial_transactions (etl/archive.py): the current month and the
    # months before it, this many in all, stay online; older ones are archived to files.
    transactions_retention_months: int = Field(default=24, ge=1, le=1200)
    archive_dir: Path | None = Field(default=None, description="Unset: <data_dir>/archive.")
    archive_at: str = Field(default="04:30", description="Local time of the daily archive job.")
    archive_restore_keep_days: int = Field(default=30, ge=1, description="A restored month stays.")
    # Test hook: the archive job kills its own process after this step (etl/archive.py STEPS).
    archive_fail_after: str | None = None

    # Commissions: the scheduled job closing the previous month (commissions.service.close_previous_month)
    commission_close_day: int = Field(default=5, ge=1, le=28, description="Local day of the month.")
    commission_close_at: str = Field(default="06:00", description="Local time of the monthly close.")

    # Backups of the robust database (db/backup.py, etl/backups.py): pg_dump custom format with
    # a manifest beside each dump, in backup_dir (shared storage when several machines run the
    # worker), daily at backup_time (local), rotated 7 daily / 4 weekly / 12 monthly.
    backup_dir: Path | None = Field(default=None, description="Unset: <data_dir>/backups.")
    backup_enabled: bool = Field(default=True, description="The scheduled daily backup.")
    backup_time: str = Field(default="03:30", description="Local time of the daily backup.")
    backup_lean: bool = Field(default=False, description="Leave out what the ETL rebuilds.")
    backup_keep_daily: int = Field(default=7, ge=1)
    backup_keep_weekly: int = Field(default=4, ge=0)
    backup_keep_monthly: int = Field(default=12, ge=0)
    backup_pg_bin_dir: Path | None = Field(
        default=None, description="Where pg_dump/pg_restore are; unset: found by the server's major."
    )

    # API
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_page_size: int = Field(default=100, ge=1, le=1000)

    # API security: JWT bearer tokens (see resolvers/auth.py)
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret (32+ bytes). Unset: every token is refused."
    )
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_public_key_file: Path | None = Field(default=None, description="RS256: a PEM public key.")
    jwt_jwks_file: Path | None = Field(default=None, description="RS256: a JWKS file (key by kid).")
    jwt_private_key_file: Path | None = Field(
        default=None, description="RS256: the PEM private key `fature token` signs with (dev)."
    )
    jwt_issuer: str | None = Field(default=None, description="When set, tokens must carry this `iss`.")
    jwt_audience: str | None = Field(default=None, description="When set, tokens must carry this `aud`.")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=600)
    metrics_public: bool = Field(
        default=False, description="False: /metrics answers loopback clients and admin tokens only."
    )

    # API limits (each rejection is a GraphQL error with extensions.code)
    max_query_depth: int = Field(default=10, ge=2, le=50)
    max_aliases: int = Field(default=30, ge=0, le=1000)
    max_tokens: int = Field(default=2000, ge=50, le=100_000)
    max_query_cost: int = Field(default=50_000, ge=100)
    max_batch_operations: int = Field(default=10, ge=1, le=100)
    introspection_for_affiliates: bool = False
    # Request and document size (issue 13): a larger body is refused with 413 before it is read
    # in full; a larger GraphQL document is refused before it is parsed.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Largest request body.")
    max_document_bytes: int = Field(default=100_000, ge=100, description="Largest GraphQL document.")
    # Every per-document cache (parse, validation, cost, cache plan) is bounded by this many bytes
    # of document text, and keyed by the document's hash.
    document_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # Server-side statement timeouts (PostgreSQL statement_timeout), each answered TIMEOUT.
    read_timeout_seconds: float = Field(default=5.0, gt=0, description="API reads.")
    # Read replicas (issue 16, db/replicas.py): streaming replicas of database_url the API reads
    # (a comma list or a JSON list of URLs); one lagging more than replica_max_lag_seconds, or
    # down, leaves the rotation (reads go to the primary); each is checked every
    # replica_check_seconds.
    database_read_urls: str = Field(default="")
    replica_max_lag_seconds: float = Field(default=10.0, gt=0)
    replica_check_seconds: float = Field(default=1.0, gt=0)
    long_read_timeout_seconds: float = Field(default=60.0, gt=0, description="Exports, simulations.")
    etl_timeout_seconds: float = Field(default=1800.0, gt=0, description="One ETL SQL statement.")
    # CORS: the browser origins allowed to call the API (exact, e.g. ["https://portal.example"]),
    # and/or a regular expression of origins. None by default: no cross-origin browser access.
    # `fature demo` allows http://localhost:* and http://127.0.0.1:* (FATURE_CORS_ORIGIN_REGEX).
    cors_origins: list[str] = Field(default=[])
    cors_origin_regex: str | None = Field(default=None)
    cors_max_age_seconds: int = Field(default=600, ge=0, le=86400)
    # Forwarded headers (X-Forwarded-For) are believed only from these proxy IPs.
    trusted_proxies: list[str] = Field(default=[])
    # A suspended affiliate's token is refused; its status is looked up at most this often.
    account_status_cache_seconds: float = Field(default=5.0, ge=0)
    # The custom executor's short ways (schema/execution.py) and the cache hit's short way
    # (web/graphql.py); false: graphql-core's executor exactly as strawberry runs it, every
    # request through strawberry's view (the answers are the same; tests compare both).
    fast_execution: bool = True
    # Registered documents' compiled execution (schema/compiled.py): a document whose every field
    # the compiler covers is planned once and answered from one SQL statement, without the
    # per-field machinery; false: every document takes the general path (the answers are the
    # same, byte for byte; tests compare both).
    compiled_execution: bool = True
    # Persisted operations (web/persisted.py): Apollo's automatic persisted queries, kept in
    # Redis when redis_url is set (shared by every API process), else in a bounded in-memory LRU.
    apq_enabled: bool = True
    apq_memory_bytes: int = Field(default=8 * 1024 * 1024, ge=0, description="In-memory APQ store bound.")
    apq_ttl_seconds: int = Field(default=7 * 86400, ge=60, description="A document's life in Redis.")
    # Trusted documents: only the manifest's operations run for affiliates (or for everyone).
    trusted_documents: Literal["off", "affiliates", "all"] = "off"
    trusted_documents_path: Path | None = Field(
        default=None, description="The manifest (apollo-persisted-query-manifest JSON), read at start."
    )

    # Rate limiting (the `limits` library; Redis when redis_url is set)
    rate_limit_enabled: bool = True
    rate_limit: str = Field(default="600/minute", description="Per token (its subject).")
    rate_limit_burst: str = Field(default="50/second", description="Short-window cap per token.")
    rate_limit_anonymous: str = Field(default="60/minute", description="Per IP, without a valid token.")

    # Response cache (aiocache; Redis when redis_url is set) and data freshness
    cache_enabled: bool = True
    # The TTL only bounds memory: freshness comes from the ETL generation in every key.
    cache_ttl_seconds: int = Field(default=300, ge=1)
    cache_timeout_seconds: float = Field(default=0.25, gt=0, description="Per Redis operation.")
    # After a Redis failure, cache and shared rate limits are skipped this long, then retried.
    cache_retry_seconds: float = Field(default=5.0, gt=0)
    cache_root_fields: list[str] = Field(default=["affiliate", "me", "ranking", "syncStatus"])
    # Backstop poll of etl.runs for runs committed by other processes; 0: off.
    freshness_poll_seconds: float = Field(default=5.0, ge=0)
    # /readyz: the last successful ETL run finished less than this ago.
    ready_max_etl_age_seconds: int = Field(default=3600, ge=1)
    # /readyz: the last successful backup is younger than this many hours; unset: not checked.
    ready_max_backup_age_hours: float | None = Field(default=None, gt=0)
    access_log: bool = True
    # Live updates: GraphQL subscriptions over graphql-transport-ws on /graphql
    # (web/subscriptions.py). Limits count per token subject, across processes through Redis
    # when redis_url is set (leases that expire when a process dies), per process otherwise.
    ws_max_connections_per_token: int = Field(default=5, ge=1, description="Open WebSockets per token.")
    ws_max_subscriptions_per_token: int = Field(default=20, ge=1, description="Live subscriptions per token.")
    ws_ping_seconds: float = Field(
        default=15.0, ge=0, description="Server ping period; no pong by the next ping closes. 0: off."
    )
    ws_connection_init_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long an open WebSocket may wait before connection_init."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("FATURE_NOW needs a UTC offset, e.g. 2026-11-30T12:00:00-03:00")
        return value

    @field_validator("cors_origin_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        import re

        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.endswith("/")):
                raise ValueError(f"an origin is scheme://host[:port] without a path, got {origin!r}")
        return value

    @field_validator("rate_limit", "rate_limit_burst", "rate_limit_anonymous")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate like '600/minute': {value!r}") from exc
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("FATURE_JWT_SECRET must be at least 32 bytes")
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


    @field_validator("database_read_urls")
    @classmethod
    def _read_urls(cls, value: str) -> str:
        for url in read_urls(value):
            cls._parsable_url(url)
        return value

    @property
    def read_urls(self) -> list[str]:
        """``FATURE_DATABASE_READ_URLS`` as a list (comma list or JSON list)."""
        return read_urls(self.database_read_urls)


def read_urls(value: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise ValueError("not a JSON list of database URLs") from exc
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("not a JSON list of database URLs")
        return [i.strip() for i in items if i.strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


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
