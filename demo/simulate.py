"""Keep a demo operation database alive: new users, referrals, deposits, bets, as they happen.

Every second, one transaction adds about `rate` events: sign-ups (most of them referred
by an existing affiliate), deposits and withdrawals and their status changes, bets of
the players currently "at the tables", a contact or status change now and then, and
rarely a referral moved to another affiliate by support or the arrival of a referrer
that tracked already pointed to. New rows get fresh unique ids; every update sets
``atualizado_em = now()``. The source's rules (operation_db.sql) hold throughout.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from demo import names
from demo.generator import MULTIPLIER_SHAPE, RTP, WIN_SHARE, asyncpg_url

TICK_SECONDS = 1.0

# Share of events by kind (the rest of an event budget goes to bets).
EVENT_MIX: dict[str, float] = {
    "signup": 0.05,
    "deposit": 0.10,
    "deposit_status": 0.06,
    "withdrawal": 0.03,
    "withdrawal_status": 0.02,
    "user_update": 0.015,
    "referral_move": 0.005,
    "bet": 0.72,
}
TABLE_PLAYERS = 120  # players in a session at any time


@dataclass
class _Tick:
    """What one tick wrote, reported to `on_tick`."""

    number: int
    events: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def add(self, bucket: dict[str, int], table: str, status: str) -> None:
        count = int(status.rsplit(" ", 1)[1]) if status else 0
        bucket[table] = bucket.get(table, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return {
            "tick": self.number,
            "events": self.events,
            "inserted": dict(self.inserted),
            "updated": dict(self.updated),
        }


async def simulate(
    url: str,
    rate: float,
    duration_seconds: float | None = None,
    seed: int | None = None,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Add about `rate` events per second to the operation database at `url`.

    Runs until `duration_seconds` have passed (forever if None) or the task is
    cancelled; each tick is one transaction, so a cancellation never leaves half a tick.
    `on_tick` receives ``{"tick", "events", "inserted": {table: n}, "updated": {...}}``.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        world = _World(conn, rng)
        await world.load()
        started = time.monotonic()
        last = started
        owed = 0.0
        number = 0
        while duration_seconds is None or time.monotonic() - started < duration_seconds:
            now = time.monotonic()
            owed += rate * ((now - last) if number else TICK_SECONDS)
            last = now
            events, owed = int(owed), owed - int(owed)
            number += 1
            tick = _Tick(number, events)
            async with conn.transaction():
                await world.tick(tick)
            if on_tick:
                on_tick(tick.as_dict())
            pause = TICK_SECONDS - (time.monotonic() - now)
            if duration_seconds is not None:
                pause = min(pause, duration_seconds - (time.monotonic() - started))
            if pause > 0:
                await asyncio.sleep(pause)
    finally:
        try:
            await asyncio.shield(conn.close(timeout=5))
        except BaseException:
            conn.terminate()  # cancelled again, or the server went away: just let go
            raise


class _World:
    """The simulator's view of the operator: who is playing, which referrers are missing."""

    def __init__(self, conn: asyncpg.Connection, rng: random.Random) -> None:
        self.conn = conn
        self.rng = rng
        self.players: list[int] = []
        self.missing_referrers: list[int] = []

    async def load(self) -> None:
        self.players = await self._random_ids("cadastro", TABLE_PLAYERS)
        # referrers tracked already points to but that have not signed up yet
        self.missing_referrers = [
            r["afiliado_id"]
            for r in await self.conn.fetch(
                "SELECT DISTINCT t.afiliado_id FROM tracked t"
                " WHERE NOT EXISTS (SELECT 1 FROM cadastro c WHERE c.id = t.afiliado_id)"
                " ORDER BY 1 LIMIT 100"
            )
        ]

    async def tick(self, tick: _Tick) -> None:
        kinds = list(EVENT_MIX)
        counts = dict.fromkeys(kinds, 0)
        for kind in self.rng.choices(kinds, weights=list(EVENT_MIX.values()), k=tick.events):
            counts[kind] += 1
        self._rotate_players()
        if counts["signup"]:
            await self._signups(tick, counts["signup"])
        if counts["deposit"]:
            await self._money(tick, "depositos", counts["deposit"])
        if counts["withdrawal"]:
            await self._money(tick, "saque", counts["withdrawal"])
        if counts["deposit_status"]:
            await self._settle(tick, "depositos", counts["deposit_status"])
        if counts["withdrawal_status"]:
            await self._settle(tick, "saque", counts["withdrawal_status"])
        if counts["user_update"]:
            await self._user_updates(tick, counts["user_update"])
        if counts["referral_move"]:
            await self._referral_moves(tick, counts["referral_move"])
        if counts["bet"]:
            await self._bets(tick, counts["bet"])

    def _rotate_players(self) -> None:
        """A few players leave the tables each tick (new sign-ups and returners join)."""
        if self.players and self.rng.random() < 0.5:
            self.players.pop(self.rng.randrange(len(self.players)))

    async def _random_ids(self, table: str, n: int) -> list[int]:
        """`n` existing ids of `table`, roughly uniform (ids are sparse and shuffled)."""
        bounds = await self.conn.fetchrow(f"SELECT min(id) AS lo, max(id) AS hi FROM {table}")
        if bounds["lo"] is None or n <= 0:
            return []
        probes = [self.rng.randint(bounds["lo"], bounds["hi"]) for _ in range(n)]
        rows = await self.conn.fetch(
            f"SELECT p.id FROM unnest($1::bigint[]) AS probe(x) CROSS JOIN LATERAL"
            f" (SELECT id FROM {table} WHERE id >= probe.x ORDER BY id LIMIT 1) p",
            probes,
        )
        return [r["id"] for r in rows]

    async def _new_ids(self, table: str, n: int) -> list[int]:
        top = await self.conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")
        ids = []
        for _ in range(n):
            top += self.rng.randint(1, 7)
            ids.append(top)
        return ids

    async def _signups(self, tick: _Tick, n: int) -> None:
        ids = await self._new_ids("cadastro", n)
        arriving = [
            self.missing_referrers.pop()
            for _ in range(n)
            if self.missing_referrers and self.rng.random() < 0.05
        ]
        ids[: len(arriving)] = arriving  # a referrer tracked was waiting for
        people = [_person(self.rng) for _ in ids]
        affiliate = [i < len(arriving) or self.rng.random() < 0.05 for i in range(len(ids))]
        status = await self.conn.execute(
            "INSERT INTO cadastro (id, nome, email, telefone, afiliado, status, criado_em,"
            " atualizado_em) SELECT id, nome, email, telefone, afiliado, 'ativo', now(), now()"
            " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[])"
            " AS n(id, nome, email, telefone, afiliado) ON CONFLICT (id) DO NOTHING",
            ids,
            *(list(col) for col in zip(*people, strict=True)),
            affiliate,
        )
        tick.add(tick.inserted, "cadastro", status)
        referred = [i for i in ids if self.rng.random() < 0.85]
        # preferential attachment: the referrer of a random existing referral
        referrers = await self._referrers(len(referred))
        pairs = [(u, r) for u, r in zip(referred, referrers, strict=False) if u != r]
        if pairs:
            tracked_ids = await self._new_ids("tracked", len(pairs))
            status = await self.conn.execute(
                "INSERT INTO tracked (id, user_id, afiliado_id, criado_em, atualizado_em)"
                " SELECT id, u, a, now(), now()"
                " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(id, u, a)"
                " ON CONFLICT DO NOTHING",
                tracked_ids,
                [u for u, _ in pairs],
                [a for _, a in pairs],
            )
            tick.add(tick.inserted, "tracked", status)
        self.players.extend(i for i in ids if self.rng.random() < 0.6)

    async def _referrers(self, n: int) -> list[int]:
        if n <= 0:
            return []
        picks = await self._random_ids("tracked", n)
        rows = await self.conn.fetch(
            "SELECT t.afiliado_id FROM unnest($1::bigint[]) WITH ORDINALITY AS p(id, o)"
            " JOIN tracked t ON t.id = p.id ORDER BY p.o",
            picks,
        )
        return [r["afiliado_id"] for r in rows]

    async def _active_players(self, n: int) -> list[int]:
        if len(self.players) < TABLE_PLAYERS // 2:
            self.players += await self._random_ids("cadastro", TABLE_PLAYERS // 4)
        return [self.rng.choice(self.players) for _ in range(n)] if self.players else []

    async def _money(self, tick: _Tick, table: str, n: int) -> None:
        users = await self._active_players(n)
        if not users:
            return
        ids = await self._new_ids(table, len(users))
        amounts = [_amount(self.rng, table) for _ in users]
        # most PIX deposits are confirmed at once; withdrawals wait for review
        approved_share = 0.7 if table == "depositos" else 0.2
        statuses = ["aprovado" if self.rng.random() < approved_share else "pendente" for _ in users]
        status = await self.conn.execute(
            f"INSERT INTO {table} (id, user_id, valor, status, criado_em, atualizado_em)"
            " SELECT id, u, v, s, now(), now()"
            " FROM unnest($1::bigint[], $2::bigint[], $3::numeric[], $4::text[]) AS m(id, u, v, s)"
            " ON CONFLICT (id) DO NOTHING",
            ids,
            users,
            amounts,
            statuses,
        )
        tick.add(tick.inserted, table, status)

    async def _settle(self, tick: _Tick, table: str, n: int) -> None:
        """Pending rows get decided; with none pending, an approved one is reversed."""
        status = await self.conn.execute(
            f"UPDATE {table} SET status = CASE WHEN random() < 0.85 THEN 'aprovado'"
            "  ELSE 'cancelado' END, atualizado_em = now()"
            f" WHERE id IN (SELECT id FROM {table} WHERE status = 'pendente'"
            "   AND atualizado_em > now() - interval '1 day' ORDER BY atualizado_em LIMIT $1)",
            n,
        )
        if status.endswith(" 0"):
            ids = await self._random_ids(table, 1)
            status = await self.conn.execute(
                f"UPDATE {table} SET status = 'cancelado', atualizado_em = now()"
                " WHERE id = ANY($1::bigint[]) AND status = 'aprovado'",
                ids,
            )
        tick.add(tick.updated, table, status)

    async def _user_updates(self, tick: _Tick, n: int) -> None:
        ids = await self._random_ids("cadastro", n)
        status = await self.conn.execute(
            "UPDATE cadastro SET atualizado_em = now(),"
            " status = CASE WHEN random() < 0.5 THEN status"
            "   WHEN status = 'ativo' THEN (CASE WHEN random() < 0.8 THEN 'inativo'"
            "     ELSE 'suspenso' END) ELSE 'ativo' END,"
            " telefone = CASE WHEN random() < 0.3 THEN"
            "   '+55 11 9' || (6 + floor(random() * 4)) || lpad(floor(random() * 1000)::text, 3,"
            "   '0') || '-' || lpad(floor(random() * 10000)::text, 4, '0') ELSE telefone END"
            " WHERE id = ANY($1::bigint[])",
            ids,
        )
        tick.add(tick.updated, "cadastro", status)

    async def _referral_moves(self, tick: _Tick, n: int) -> None:
        ids = await self._random_ids("tracked", n)
        referrers = await self._referrers(len(ids))
        status = await self.conn.execute(
            "UPDATE tracked t SET afiliado_id = m.a, atualizado_em = now()"
            " FROM unnest($1::bigint[], $2::bigint[]) AS m(id, a)"
            " WHERE t.id = m.id AND t.user_id <> m.a AND t.afiliado_id <> m.a",
            ids[: len(referrers)],
            referrers,
        )
        tick.add(tick.updated, "tracked", status)

    async def _bets(self, tick: _Tick, n: int) -> None:
        users = await self._active_players(n)
        if not users:
            return
        ids = await self._new_ids("casino_bets_v", len(users))
        stakes = [_stake(self.rng) for _ in users]
        wins = [_win(self.rng, stake) for stake in stakes]
        games = [self.rng.choice(names.GAMES[:10]) for _ in users]
        status = await self.conn.execute(
            "INSERT INTO casino_bets_v (id, user_id, jogo, valor_aposta, valor_premio, criado_em)"
            " SELECT id, u, g, s, w, now() FROM unnest($1::bigint[], $2::bigint[], $3::text[],"
            " $4::numeric[], $5::numeric[]) AS b(id, u, g, s, w) ON CONFLICT (id) DO NOTHING",
            ids,
            users,
            games,
            stakes,
            wins,
        )
        tick.add(tick.inserted, "casino_bets_v", status)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _person(rng: random.Random) -> tuple[str, str | None, str | None]:
    first, surname = rng.choice(names.FIRST_NAMES), rng.choice(names.SURNAMES)
    nome = f"{first} {surname} {rng.choice(names.SURNAMES)}"
    email = f"{_ascii(first)}.{_ascii(surname)}{rng.randint(1, 99)}@{rng.choice(names.EMAIL_DOMAINS)}"
    phone = (
        f"+55 {rng.choice(names.AREA_CODES)} 9{rng.randint(6, 9)}{rng.randint(0, 999):03d}"
        f"-{rng.randint(0, 9999):04d}"
    )
    return nome, email, phone


def _amount(rng: random.Random, table: str) -> Decimal:
    level = min(len(names.DEPOSITS) - 1, int(rng.expovariate(1 / 2.8)) + rng.randint(0, 3))
    base = Decimal(names.DEPOSITS[level])
    if table == "saque":
        base *= Decimal(str(round(0.4 + 2.5 * rng.random() ** 2, 2)))
    return max(Decimal("10.00"), base.quantize(Decimal("0.01")))


def _stake(rng: random.Random) -> Decimal:
    return Decimal(names.STAKES[min(len(names.STAKES) - 1, int(rng.expovariate(1 / 2.8)))])


def _win(rng: random.Random, stake: Decimal) -> Decimal:
    """The generator's bet outcomes: a third of bets win, 96% RTP overall."""
    if rng.random() >= WIN_SHARE:
        return Decimal("0.00")
    scale = RTP / WIN_SHARE / math.gamma(1 + MULTIPLIER_SHAPE)
    multiple = scale * (-math.log(1.0 - rng.random())) ** MULTIPLIER_SHAPE
    return (stake * Decimal(str(round(multiple, 4)))).quantize(Decimal("0.01"))
