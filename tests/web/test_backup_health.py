"""/readyz watches the last backup's age when asked; /metrics shows the last backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from db.backup_files import Manifest, write_manifest
from tests.support.deployment import Deployment, serve


def backup_taken(directory: Path, taken: datetime, size: int = 1234) -> None:
    name = f"fature-{taken:%Y%m%dT%H%M%S%fZ}.dump"
    (directory / name).write_bytes(b"x" * size)
    write_manifest(directory, Manifest(
        file=name, sha256="0" * 64, size_bytes=size, created_at=taken.isoformat(), alembic_revision="0009",
        server_version_num=150000, pg_dump_version="15", cursors={}, row_counts={}, duration_s=2.5))


def metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


async def test_readyz_fails_when_the_last_backup_is_too_old(deployment: Deployment, tmp_path: Path) -> None:
    async with serve(deployment, backup_dir=tmp_path) as api:
        off = await api.client.get("/readyz")  # not asked: no backup is fine
        assert off.status_code == 200 and "last_backup_age_hours" not in off.json()["checks"]
        assert metric((await api.client.get("/metrics")).text, "fature_backup_last_success_timestamp_seconds") == 0

    async with serve(deployment, backup_dir=tmp_path, ready_max_backup_age_hours=24) as api:
        none = await api.client.get("/readyz")
        assert none.status_code == 503 and "no successful backup yet" in none.json()["reasons"]

        old = datetime.now(UTC) - timedelta(hours=30)
        backup_taken(tmp_path, old)
        stale = await api.client.get("/readyz")
        assert stale.status_code == 503
        assert stale.json()["reasons"] == ["the last successful backup is older than 24 h"]
        assert 29.9 < stale.json()["checks"]["last_backup_age_hours"] < 30.5

        recent = datetime.now(UTC) - timedelta(hours=1)
        backup_taken(tmp_path, recent, size=4321)
        fresh = await api.client.get("/readyz")
        assert fresh.status_code == 200, fresh.json()
        assert 0.9 < fresh.json()["checks"]["last_backup_age_hours"] < 1.5

        text = (await api.client.get("/metrics")).text
        assert metric(text, "fature_backup_last_success_timestamp_seconds") == recent.timestamp()
        assert metric(text, "fature_backup_last_size_bytes") == 4321
        assert metric(text, "fature_backup_last_duration_seconds") == 2.5
