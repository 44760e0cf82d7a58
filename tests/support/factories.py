"""Small factories that write operation-database rows the way the operator's system does."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from db.settings import Settings
from etl.runs import RunResult
from etl.sync import run_cycle

_ids = itertools.count(1000)


def ts(text: str) -> datetime:
    """'2025-03-02 10:00Z' or any ISO 8601 text with an offset -> an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Operation:
    """Writes cadastro/tracked/depositos/saque/casino_bets_v rows; ids are unique per table."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> Operation:
        return cls(await asyncpg.connect(url))

    async def close(self) -> None:
        await self.conn.close()

    async def user(
        self,
        id: int,
        nome: str = "",
        *,
        afiliado: bool = False,
        status: str = "ativo",
        at: str = "2025-01-01 00:00Z",
        updated: str | None = None,
    ) -> int:
        await self.conn.execute(
            "INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em, "
            "atualizado_em) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            id,
            nome or f"User {id}",
            f"user{id}@example.com",
            f"+55 11 9{id:08d}",
            afiliado,
            status,
            ts(at),
            ts(updated or at),
        )
        return id

    async def track(
        self,
        user_id: int,
        afiliado_id: int,
        at: str,
        *,
        id: int | None = None,
        updated: str | None = None,
    ) -> int:
        row_id = id or next(_ids)
        await self.conn.execute(
            "INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em) "
            "VALUES ($1, $2, $3, $4, $5)",
            row_id,
            user_id,
            afiliado_id,
            ts(at),
            ts(updated or at),
        )
        return row_id

    async def move(self, user_id: int, new_afiliado_id: int, updated: str) -> None:
        await self.conn.execute(
            "UPDATE tracked SET afiliado_id = $2, atualizado_em = $3 WHERE user_id = $1",
            user_id,
            new_afiliado_id,
            ts(updated),
        )

    async def deposit(
        self,
        user_id: int,
        valor: str,
        at: str,
        status: str = "aprovado",
        *,
        id: int | None = None,
        updated: str | None = None,
        table: str = "depositos",
    ) -> int:
        row_id = id or next(_ids)
        await self.conn.execute(
            f"INSERT INTO {table} (id, user_id, valor, status, criado_em, atualizado_em) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            row_id,
            user_id,
            Decimal(valor),
            status,
            ts(at),
            ts(updated or at),
        )
        return row_id

    async def withdrawal(
        self, user_id: int, valor: str, at: str, status: str = "aprovado", **kw: object
    ) -> int:
        return await self.deposit(user_id, valor, at, status, table="saque", **kw)  # type: ignore[arg-type]

    async def set_status(self, table: str, id: int, status: str, updated: str) -> None:
        await self.conn.execute(
            f"UPDATE {table} SET status = $2, atualizado_em = $3 WHERE id = $1",
            id,
            status,
            ts(updated),
        )

    async def bet(
        self, user_id: int, stake: str, win: str, at: str, *, id: int | None = None
    ) -> int:
        row_id = id or next(_ids)
        await self.conn.execute(
            "INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, criado_em) "
            "VALUES ($1, $2, 'slots', $3, $4, $5)",
            row_id,
            user_id,
            Decimal(stake),
            Decimal(win),
            ts(at),
        )
        return row_id


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def write_worked_example(op: Operation) -> None:
    """EXAMPLE.md's operation database: Ana (101) refers Bruno (102), who refers Carla (103)."""
    await op.user(101, "Ana", afiliado=True)
    await op.user(102, "Bruno")
    await op.user(103, "Carla")
    await op.track(102, 101, "2025-03-02 10:00Z")
    await op.track(103, 102, "2025-03-03 12:00Z")
    await op.deposit(102, "50.00", "2025-03-02 11:00Z")
    await op.deposit(103, "20.00", "2025-03-05 13:00Z")
    await op.deposit(103, "15.00", "2025-03-05 13:05Z", "pendente")
    await op.bet(102, "80.00", "0.00", "2025-03-02 12:00Z")
    await op.bet(102, "30.00", "45.00", "2025-03-04 02:30Z")
    await op.bet(103, "200.00", "150.00", "2025-03-05 14:00Z")


async def etl(settings: Settings, robust_url: str, operation_url: str, **kw: Any) -> RunResult:
    """One ETL cycle of the source into the robust database (run_cycle raises on failure)."""
    result = await run_cycle(settings, robust_url, operation_url, **kw)
    assert result.status == "success"
    return result
