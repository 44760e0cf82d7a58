"""Prometheus metrics, one registry per app (tests build several apps in one process)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
MAX_OPERATION_NAMES = 200  # operation names are client-chosen: bound the label's cardinality
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fature_requests_total", "API requests by operation and HTTP status.",
            ["operation", "status"], registry=r,
        )
        self.latency = Histogram(
            "fature_request_duration_seconds", "API request latency by operation.",
            ["operation"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.cache_hits = Counter("fature_cache_hits_total", "Response cache hits.", registry=r)
        self.cache_misses = Counter("fature_cache_misses_total", "Response cache misses.", registry=r)
        self.cache_errors = Counter(
            "fature_cache_errors_total", "Response cache backend failures (answered uncached).", registry=r
        )
        self.rate_limited = Counter(
            "fature_rate_limited_total", "Requests rejected with 429.", ["kind"], registry=r
        )
        self.auth_failures = Counter(
            "fature_auth_failures_total", "Requests rejected with 401.", ["reason"], registry=r
        )
        self.etl_runs = Counter(
            "fature_etl_runs_total", "ETL runs finished, by mode and status.", ["mode", "status"], registry=r
        )
        self.etl_rows = Counter(
            "fature_etl_rows_written_total", "Rows written by committed ETL runs.", registry=r
        )
        self.etl_duration = Histogram(
            "fature_etl_run_duration_seconds", "Duration of committed ETL runs.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800), registry=r,
        )
        self.freshness = Gauge(
            "fature_data_freshness_seconds",
            "Seconds since the instant the data reflects (the last successful ETL's as-of).", registry=r,
        )
        self.pool = Gauge(
            "fature_db_pool_connections", "Robust database pool connections by state.", ["state"], registry=r
        )
        # Read replicas (db/replicas.py): per node ("primary", "replica1", ...).
        self.replica_lag = Gauge(
            "fature_replica_lag_seconds", "How far a read replica is behind the primary (last check).",
            ["node"], registry=r,
        )
        self.replica_in_rotation = Gauge(
            "fature_replica_in_rotation", "1 when the read replica serves reads, 0 when out of rotation.",
            ["node"], registry=r,
        )
        self.node_reads = Counter(
            "fature_node_reads_total", "Answers read from each database node (primary, replicaN).",
            ["node"], registry=r,
        )
        self.read_retries = Counter(
            "fature_read_retries_total", "Answers computed again on another node (replica down or "
            "recovery conflict), by the node that failed.", ["node"], registry=r,
        )
        self.websockets = Gauge(
            "fature_websocket_connections", "Open GraphQL WebSocket connections (/graphql).", registry=r
        )
        self.subscriptions = Gauge(
            "fature_subscriptions", "Live GraphQL subscriptions, by root field.", ["field"], registry=r
        )
        self.backup_last = Gauge(
            "fature_backup_last_success_timestamp_seconds",
            "When the last successful backup's snapshot was taken (Unix time; 0: none in FATURE_BACKUP_DIR).",
            registry=r,
        )
        self.backup_last_size = Gauge(
            "fature_backup_last_size_bytes", "Size of the last successful backup's dump.", registry=r
        )
        self.backup_last_duration = Gauge(
            "fature_backup_last_duration_seconds", "How long the last successful backup took.", registry=r
        )
        self.archive_last = Gauge(
            "fature_archive_last_success_timestamp_seconds",
            "When the last successful transactions archive run finished (Unix time; 0: none yet).",
            registry=r,
        )
        self._operations: set[str] = set()

    def operation_label(self, name: str | None) -> str:
        """A client's operation name as a bounded, safe label."""
        if not name:
            return "anonymous"
        if not _NAME.match(name):
            return "invalid"
        if name in self._operations:
            return name
        if len(self._operations) >= MAX_OPERATION_NAMES:
            return "other"
        self._operations.add(name)
        return name

    def observe(self, operation: str, status: int, seconds: float) -> None:
        self.requests.labels(operation, str(status)).inc()
        self.latency.labels(operation).observe(seconds)

    def watch(self, as_of: Callable[[], Any], pool: Any) -> None:
        """Gauges computed at scrape time: data freshness and the pool's connections."""

        def freshness() -> float:
            moment = as_of()
            return time.time() - moment.timestamp() if moment is not None else float("nan")

        self.freshness.set_function(freshness)
        for state, read in (
            ("size", lambda: pool.size()),
            ("checked_out", lambda: pool.checkedout()),
            ("idle", lambda: pool.checkedin()),
            ("overflow", lambda: max(pool.overflow(), 0)),
        ):
            self.pool.labels(state).set_function(_safe(read))

    def replicas_checked(self, nodes: Any) -> None:
        """After each replica check (db/replicas.ReadNodes.check_listeners)."""
        for node in nodes.replicas:
            self.replica_lag.labels(node.name).set(node.lag_seconds if node.up else float("nan"))
            self.replica_in_rotation.labels(node.name).set(1.0 if node.in_rotation else 0.0)

    def backup_seen(self, taken_at: float, size_bytes: int, duration_s: float) -> None:
        """The last successful backup (db/backup_files.last_backup), read at scrape time."""
        self.backup_last.set(taken_at)
        self.backup_last_size.set(size_bytes)
        self.backup_last_duration.set(duration_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _safe(read: Callable[[], float]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - a pool without the counter reports NaN, never fails a scrape
            return float("nan")

    return value
