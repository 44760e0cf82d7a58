"""Every shared fixture of the suite (helpers live in tests/support/).

Real PostgreSQL databases: the robust schema is migrated once per session into a template
database, and each test that writes gets a copy of it (CREATE DATABASE ... TEMPLATE), which is
fast and fully isolated; read-only tests share one ETL-built ``deployment`` and its served ``api``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

import pytest

from db import clock as process_clock
from db import migrate
from db.settings import Settings
from tests.support.clients import Clients
from tests.support.databases import (
    admin,
    db_url,
    drop_database,
    new_operation_database,
    new_robust_database,
)
from tests.support.deployment import (
    JWT_SECRET,
    PLAIN,
    Api,
    Deployment,
    build_deployment,
    drop_deployment,
    serve,
)
from tests.support.factories import Operation
from tests.support.program import Program, write_program


@pytest.fixture
def clock() -> Iterator[Callable[[str | datetime | None], None]]:
    """Set the process clock (db/clock.py) the API and the commissions rules read:
    ``clock("2025-12-03T10:00:00-03:00")``; None is the system clock again, as after the test."""

    def set_now(instant: str | datetime | None) -> None:
        process_clock.set_now(datetime.fromisoformat(instant) if isinstance(instant, str) else instant)

    yield set_now
    process_clock.set_now(None)


@pytest.fixture(scope="session")
def robust_template() -> Iterator[str]:
    name = f"fature_tpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    migrate.upgrade(db_url(name))
    yield name
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def robust_url(robust_template: str) -> AsyncIterator[str]:
    url = await new_robust_database(robust_template)
    yield url
    await drop_database(url)


@pytest.fixture
async def operation_url() -> AsyncIterator[str]:
    url = await new_operation_database()
    yield url
    await drop_database(url)


@pytest.fixture
def settings(robust_url: str, operation_url: str) -> Settings:
    return Settings(
        database_url=robust_url,
        operation_database_url=operation_url,
        etl_scheduler_enabled=False,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def deployment(robust_template: str) -> AsyncIterator[Deployment]:
    """The shared read-only deployment (tests/support/deployment.py), built by the real ETL."""
    built = await build_deployment(robust_template)
    yield built
    await drop_deployment(built)


@pytest.fixture(scope="session")
async def api(deployment: Deployment) -> AsyncIterator[Api]:
    """The app serving the deployment with an admin token (no cache, no rate limits)."""
    async with serve(deployment) as served:
        yield served


@pytest.fixture(scope="session")
async def secure(deployment: Deployment) -> AsyncIterator[Clients]:
    """The app with the response cache on (memory), rate limits off (test_rate_limit.py turns
    them on), and no default token: clients per role."""
    async with serve(deployment, role=None, cache_enabled=True) as served:
        yield Clients(served)


@pytest.fixture
async def op(operation_url: str) -> AsyncIterator[Operation]:
    """The operation database to write source rows into (tests/support/factories.py)."""
    operation = await Operation.open(operation_url)
    yield operation
    await operation.close()


@pytest.fixture
async def program(robust_url: str, operation_url: str) -> AsyncIterator[Program]:
    """A small commissions program in its own databases (these tests write), ETL-built and served
    to an admin (tests/support/program.py)."""
    op = await Operation.open(operation_url)
    try:
        await write_program(op)
    finally:
        await op.close()
    settings = Settings(database_url=robust_url, operation_database_url=operation_url,
                        etl_scheduler_enabled=False, jwt_secret=JWT_SECRET, _env_file=None, **PLAIN)
    deployment = Deployment(robust_url, operation_url, settings)
    program_ = Program(deployment, None)  # type: ignore[arg-type]
    await program_.etl()
    async with serve(deployment, role="admin") as served:
        program_.api = served
        yield program_
