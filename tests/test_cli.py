"""The command line as a user meets it: help everywhere, one clear line on every error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.factories import Operation

ROOT = Path(__file__).resolve().parents[1]


def fature(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FATURE_")}
    environment.update({"COLUMNS": "200", **env})
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [[], ["db"], ["etl"], ["demo"], ["serve"], ["etl", "run"], ["demo", "seed"], ["db", "upgrade"]],
)
def test_help_on_every_command(command: list[str]) -> None:
    result = fature(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_unreachable_database_is_one_line_with_the_password_masked() -> None:
    result = fature(
        "etl",
        "run",
        FATURE_DATABASE_URL="postgresql://fature:s3cret@127.0.0.1:1/robust",
        FATURE_OPERATION_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "127.0.0.1:1/robust" in error_lines[0] and "***" in error_lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_bad_setting_names_the_variable() -> None:
    result = fature("etl", "status", FATURE_TIMEZONE="Mars/Olympus_Mons")
    assert result.returncode == 1
    assert "FATURE_TIMEZONE" in result.stderr and "Traceback" not in result.stderr
    result = fature("etl", "status", FATURE_DATABASE_URL="mysql://root@localhost/x")
    assert result.returncode == 1
    assert "FATURE_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_etl_run_and_status_through_the_cli(robust_url: str, operation_url: str) -> None:
    import asyncio

    async def write() -> None:
        op = await Operation.open(operation_url)
        await op.user(1, afiliado=True)
        await op.user(2)
        await op.track(2, 1, "2025-01-01 12:00Z")
        await op.close()

    asyncio.run(write())
    env = {"FATURE_DATABASE_URL": robust_url, "FATURE_OPERATION_DATABASE_URL": operation_url}
    run = fature("etl", "run", **env)
    assert run.returncode == 0, run.stderr
    assert "committed" in run.stdout and "cadastro" in run.stdout
    status = fature("etl", "status", **env)
    assert status.returncode == 0, status.stderr
    assert "success" in status.stdout and "data as of" in status.stdout


def test_token_is_signed_with_the_configured_secret(tmp_path) -> None:
    import jwt

    secret = "s" * 48
    result = fature("token", "--role", "affiliate", "--affiliate-id", "101", "--ttl", "15m",
                    FATURE_JWT_SECRET=secret, FATURE_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert (claims["role"], claims["affiliate_id"]) == ("affiliate", 101)
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert secret not in result.stdout + result.stderr


def test_token_errors_are_one_line(tmp_path) -> None:
    missing = fature("token", "--role", "affiliate", FATURE_DATA_DIR=str(tmp_path))
    assert missing.returncode == 1 and "affiliate_id" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_ttl = fature("token", "--role", "admin", "--ttl", "soon", FATURE_DATA_DIR=str(tmp_path))
    assert bad_ttl.returncode == 2 and "soon" in bad_ttl.stderr
    assert "Traceback" not in bad_ttl.stderr
