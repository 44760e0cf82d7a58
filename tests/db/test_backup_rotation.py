"""Rotation of the backup directory over a simulated year: 7 daily, 4 weekly, 12 monthly."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from db.backup_files import Manifest, last_backup, list_backups, rotate, write_manifest

ZONE = "America/Sao_Paulo"


def fake_backup(directory: Path, local_day: date, at: time = time(23, 30)) -> str:
    """A dump file and its manifest as taken at ``at`` local time on ``local_day`` (23:30 in
    São Paulo is the next day in UTC: rotation must go by the local day)."""
    taken = datetime.combine(local_day, at, ZoneInfo(ZONE)).astimezone(UTC)
    name = f"fature-{taken:%Y%m%dT%H%M%S%fZ}.dump"
    (directory / name).write_bytes(b"PGDMP" + name.encode())
    write_manifest(directory, Manifest(
        file=name, sha256="0" * 64, size_bytes=5, created_at=taken.isoformat(), alembic_revision="0009",
        server_version_num=150000, pg_dump_version="15", cursors={}, row_counts={}))
    return name


def local_days(directory: Path) -> list[date]:
    return [m.created.astimezone(ZoneInfo(ZONE)).date() for m in list_backups(directory)]


def run_a_year(directory: Path, days: list[date]) -> None:
    for day in days:
        fake_backup(directory, day)
        rotate(directory, daily=7, weekly=4, monthly=12, timezone=ZONE)


def test_a_year_of_daily_backups_keeps_7_daily_4_weekly_12_monthly(tmp_path: Path) -> None:
    start, end = date(2026, 1, 1), date(2026, 12, 31)  # 2026-12-31 is a Thursday
    run_a_year(tmp_path, [start + timedelta(days=n) for n in range((end - start).days + 1)])

    daily = {end - timedelta(days=n) for n in range(7)}
    last_sunday = end - timedelta(days=end.isoweekday() % 7)
    weekly = {end, last_sunday, last_sunday - timedelta(days=7), last_sunday - timedelta(days=14)}
    monthly = {date(2026, m, calendar.monthrange(2026, m)[1]) for m in range(1, 13)}
    assert set(local_days(tmp_path)) == daily | weekly | monthly
    assert len(local_days(tmp_path)) == 20  # Dec 25-31, Dec 13 and 20, the 11 other month ends
    assert date(2026, 1, 31) in local_days(tmp_path) and date(2026, 1, 30) not in local_days(tmp_path)
    assert date(2026, 12, 13) in local_days(tmp_path) and date(2026, 12, 14) not in local_days(tmp_path)
    # every dump left has its manifest and every manifest its dump
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".dump"] * 20 + [".json"] * 20
    newest = last_backup(tmp_path)
    assert newest is not None and newest.created.astimezone(ZoneInfo(ZONE)).date() == end


def test_missed_days_and_several_backups_a_day(tmp_path: Path) -> None:
    # a fortnight without backups (the worker was down) and then two backups on one day
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(10)] + [date(2026, 3, 25)]
    run_a_year(tmp_path, days)
    morning = fake_backup(tmp_path, date(2026, 3, 26), time(3, 30))
    evening = fake_backup(tmp_path, date(2026, 3, 26), time(21, 0))
    before = {m.file: m.created.astimezone(ZoneInfo(ZONE)).date() for m in list_backups(tmp_path)}
    removed = rotate(tmp_path, daily=7, weekly=4, monthly=12, timezone=ZONE)
    # the newest of a day stands for it; March 5th falls out of the last 7 days with a backup
    assert morning in removed and sorted(before[f] for f in removed) == [date(2026, 3, 5), date(2026, 3, 26)]
    # the last 7 days that have a backup (not calendar days), the newest of ISO weeks 9-13
    # (March 1st, 8th, 10th, 26th) and of March
    assert local_days(tmp_path) == [date(2026, 3, d) for d in (1, 6, 7, 8, 9, 10, 25, 26)]
    assert evening in {m.file for m in list_backups(tmp_path)}


def test_unfinished_and_foreign_files_are_left_alone(tmp_path: Path) -> None:
    kept = fake_backup(tmp_path, date(2026, 5, 1))
    (tmp_path / "fature-20260502T063000000000Z.dump.partial").write_bytes(b"half")  # a dump in progress
    (tmp_path / "fature-20260503T063000000000Z.dump").write_bytes(b"no manifest yet")
    (tmp_path / "notes.txt").write_text("the operator's")
    (tmp_path / "fature-broken.json").write_text("{not json")
    assert [m.file for m in list_backups(tmp_path)] == [kept]
    assert rotate(tmp_path, daily=1, weekly=0, monthly=0, timezone=ZONE) == []
    assert len(list(tmp_path.iterdir())) == 6
