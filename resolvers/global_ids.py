"""Global ids: opaque, stable names of the objects that implement Relay's ``Node``.

A global id is the base64 (standard alphabet, padded) of ``"<Type>:<key>"``: the type's name
and its business key (``Affiliate:300``, ``Referral:300:412`` for the referrer and the referred
user, ``Statement:300:2025-03``). Clients treat it as opaque; it is stable across runs and
processes because it is made of stored keys only (never of a row id the ETL may rewrite).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from resolvers.errors import BadUserInput

MAX_ID = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TEXT = 200  # longest global id read (the longest real one, a transaction's, is ~80)


def _int(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise ValueError("not a positive id")
    return int(value)


def _optional_int(value: str) -> int | None:
    return None if value == "" else _int(value)


def _month(value: str) -> date:
    year, sep, month = value.partition("-")
    if not sep or len(year) != 4 or len(month) != 2:
        raise ValueError("not a month")
    return date(int(year), int(month), 1)


def _level(value: str) -> int:
    if value not in ("1", "2", "3", "4", "5"):
        raise ValueError("not a level")
    return int(value)


def _instant(value: str) -> datetime:
    micros = int(value) if value.lstrip("-").isascii() and value.lstrip("-").isdigit() else None
    if micros is None:
        raise ValueError("not an instant")
    return _EPOCH + timedelta(microseconds=micros)


def _text(value: str) -> str:
    if not value or len(value) > 20 or not value.isascii() or not value.isalpha():
        raise ValueError("not a type")
    return value


# Each Node type with the parsers of its key's parts (in the id's order).
KEY_PARTS: dict[str, tuple[Callable[[str], Any], ...]] = {
    "Affiliate": (_int,),
    "Referral": (_int, _int),  # the referrer (the affiliate whose network it is), the user
    "CpaValidation": (_int,),
    # affiliate, instant (microseconds since the epoch), type, level, user, source row
    "Transaction": (_int, _instant, _text, _level, _optional_int, _optional_int),
    "Statement": (_int, _month),  # the affiliate, the month
    "CommissionPlan": (_int,),
    "CommissionPlanVersion": (_int,),
    "QualificationCriteria": (_int,),
    "AuditEntry": (_int,),
    "SyncRun": (_int,),
}


def _part_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str((value - _EPOCH) // timedelta(microseconds=1))
    if isinstance(value, date):
        return f"{value:%Y-%m}"
    return str(value)


def global_id(type_name: str, *key: object) -> str:
    """The opaque global id of the ``type_name`` whose business key is ``key``."""
    raw = ":".join([type_name, *(_part_text(k) for k in key)])
    return base64.b64encode(raw.encode()).decode()


def transaction_key(row: Any) -> tuple[Any, ...]:
    """What identifies an ``affiliate_financial_transactions`` row across ETL runs (its
    ``id`` does not: the ETL rewrites rows, and a full run reloads them all)."""
    return (row.affiliate_id, row.transaction_date, row.transaction_type, row.mlm_level,
            row.user_id, row.source_id)


@dataclass(frozen=True)
class NodeKey:
    """A decoded global id: the type and its business key."""

    type_name: str
    key: tuple[Any, ...]


def parse_global_id(value: object, name: str = "id", expected: str | None = None) -> NodeKey:
    """A global id this API issued; ``BadUserInput`` naming the argument otherwise (and when
    it is not of the ``expected`` type)."""
    text = str(value)
    try:
        if len(text) > _MAX_TEXT:
            raise ValueError("too long")
        raw = base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
        type_name, _, rest = raw.partition(":")
        parsers = KEY_PARTS[type_name]
        parts = rest.split(":")
        if len(parts) != len(parsers):
            raise ValueError("wrong number of key parts")
        key = tuple(parse(part) for parse, part in zip(parsers, parts, strict=True))
    except (ValueError, KeyError, UnicodeError, binascii.Error, OverflowError) as exc:
        raise BadUserInput(f"{name} is not a valid global id (use an `id` this API returned), "
                           f"got {text[:40]!r}") from exc
    if expected is not None and type_name != expected:
        raise BadUserInput(f"{name} must be an id of type {expected}, got the global id of type {type_name}")
    return NodeKey(type_name, key)


def parse_entity_id(value: object, type_name: str, name: str = "id") -> int:
    """A root argument naming one ``type_name`` by its number: the number itself (``"300"``)
    or the type's global id."""
    text = str(value).strip()
    if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
        return int(text)
    try:
        key = parse_global_id(text, name).key if not text.isdigit() else None
    except BadUserInput:
        key = None
    if key is None:
        raise BadUserInput(f"{name} must be a positive integer id, got {str(value)[:40]!r} "
                           f"(or a global id of type {type_name})")
    return int(parse_global_id(text, name, type_name).key[0])


