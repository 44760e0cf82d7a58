"""The ETL's commits on Redis, for API processes that PostgreSQL's NOTIFY cannot reach.

A replica never delivers NOTIFY, and API processes on other machines may read one. So, when
``FATURE_REDIS_URL`` is set, every committed cycle is also announced on Redis, after its
transaction committed: a message on the pub/sub channel ``channel(name)`` and the same text in
the key ``last_key(name)`` (a process that (re)subscribes reads it, so a message missed while it
was disconnected is caught at once; the API's poll of ``etl.runs`` stays as the last fallback).
Both are named after the robust database's name (the same on the primary and its replicas):
Redis' pub/sub ignores database numbers, so deployments sharing one Redis stay apart.

The message is JSON: ``run_id``, ``mode``, ``source_as_of`` (ISO 8601 or null), ``affiliates``
(how many affiliates the cycle touched), ``affiliate_ids`` (sorted; null past
``MAX_IDS_IN_MESSAGE``) and ``digest`` (sha256 of the sorted ids, comma-separated). The API
side is ``web/bus.py``. Publishing is best effort: Redis being down never fails or delays a
committed cycle by more than ``TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis

from etl.events import EtlCommitted

log = logging.getLogger("fature.etl.bus")

CHANNEL_PREFIX = "fature:etl:committed:"
LAST_KEY_PREFIX = "fature:etl:last_commit:"
MAX_IDS_IN_MESSAGE = 1000
TIMEOUT_SECONDS = 1.0


def database_name(robust_url: str) -> str:
    """The database name in a robust database URL (what names the channel)."""
    return urlsplit(robust_url).path.lstrip("/") or "postgres"


def channel(database: str) -> str:
    """The pub/sub channel of the deployment whose robust database is named ``database``."""
    return CHANNEL_PREFIX + database


def last_key(database: str) -> str:
    """The key holding the last announced commit of that deployment."""
    return LAST_KEY_PREFIX + database


def encode(event: EtlCommitted) -> bytes:
    """The message announcing ``event``."""
    ids = sorted(event.affiliate_ids)
    return orjson.dumps({
        "run_id": event.run_id,
        "mode": event.mode,
        "source_as_of": event.source_as_of.isoformat() if event.source_as_of is not None else None,
        "affiliates": len(ids),
        "affiliate_ids": ids if len(ids) <= MAX_IDS_IN_MESSAGE else None,
        "digest": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest(),
    })


def decode(message: bytes | str) -> EtlCommitted:
    """The event a message announces; ValueError (or KeyError/TypeError) when it is not one.
    A message too large to list its ids gives an empty ``affiliate_ids``."""
    data = orjson.loads(message)
    as_of = data["source_as_of"]
    return EtlCommitted(
        run_id=int(data["run_id"]),
        mode=str(data["mode"]),
        source_as_of=datetime.fromisoformat(as_of) if as_of else None,
        affiliate_ids=frozenset(int(i) for i in data.get("affiliate_ids") or ()),
    )


async def announce(redis_url: str | None, database: str, event: EtlCommitted) -> bool:
    """Publish ``event`` (committed in the robust database named ``database``) on Redis; False
    when there is no Redis or it failed."""
    if not redis_url:
        return False
    client = Redis.from_url(redis_url, socket_timeout=TIMEOUT_SECONDS,
                            socket_connect_timeout=TIMEOUT_SECONDS)
    try:
        message = encode(event)
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(last_key(database), message)
            pipe.publish(channel(database), message)
            await pipe.execute()
        return True
    except Exception as exc:  # noqa: BLE001 - redis-py raises many kinds; the commit stands
        log.warning("ETL run %s committed but not announced on Redis (%s); API processes will "
                    "see it by their poll of etl.runs", event.run_id, type(exc).__name__)
        return False
    finally:
        try:
            await client.aclose()
        except Exception:  # noqa: BLE001
            pass
