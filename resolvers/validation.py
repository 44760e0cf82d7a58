"""Affiliate.cpaValidations (the ledger, newest first) and Mutation.validateCpa."""

from __future__ import annotations

import logging
from dataclasses import replace

import strawberry
from strawberry.types import Info

from db.engine import DatabaseUnavailable
from etl.sync import EtlBusy, EtlError
from etl.validate_now import validate_affiliate_network
from resolvers.arguments import (
    as_datetime,
    as_int,
    check_first,
    check_level,
    decode_cursor,
    encode_cursor,
    parse_id,
)
from resolvers.context import Context
from resolvers.errors import Busy, Forbidden, NotAvailable, ServiceUnavailable
from resolvers.loaders.validation import ValidationArgs
from schema.pagination import Connection, connection
from schema.validation import CpaValidation, ValidateCpaResult

log = logging.getLogger("fature.api")

CURSOR_TAG = "cpa_validation"


async def cpa_validations_of(
    info: Info, affiliate_id: int, *, level: int | None, first: int | None, after: str | None
) -> Connection[CpaValidation]:
    ctx: Context = info.context
    args = ValidationArgs(
        first=check_first(first, ctx.max_page_size),
        after=decode_cursor(after, CURSOR_TAG, (as_datetime, as_int)),
        level=check_level(level),
    )
    page = await ctx.loaders.cpa_validation_page_by_affiliate.load((affiliate_id, args))

    async def count() -> int:
        return await ctx.loaders.cpa_validation_count_by_affiliate.load(
            (affiliate_id, replace(args, first=0, after=None))
        )

    return connection(
        [CpaValidation.from_row(r) for r in page.rows],
        [encode_cursor(CURSOR_TAG, r.validation_date, r.id) for r in page.rows],
        page.has_next_page, after, count,
    )


async def validate_cpa(info: Info, affiliate_id: strawberry.ID) -> ValidateCpaResult:
    """Run the ETL's CPA validation step now for this affiliate's network (same code, same
    ledger rules, same lock) and return the validations it wrote."""
    ctx: Context = info.context
    owner = parse_id(affiliate_id, "affiliateId")
    if not ctx.viewer.may_run_mutations():
        raise Forbidden("Only admin tokens may run mutations")
    if not ctx.settings.operation_database_url:
        raise NotAvailable("CPA validation on demand needs the operation database, which is not configured")
    try:
        ids = await validate_affiliate_network(ctx.robust_url, owner, ctx.settings)
    except EtlBusy as exc:
        raise Busy("An ETL cycle is running; try the validation again in a moment") from exc
    except (EtlError, DatabaseUnavailable, OSError) as exc:
        log.warning("validateCpa for %s failed: %s", owner, exc)
        raise ServiceUnavailable("The CPA validation could not run right now; try again shortly") from exc
    rows = await ctx.loaders.cpa_validation_by_id.load_many(list(ids))
    return ValidateCpaResult(
        affiliate_id=strawberry.ID(str(owner)),
        validations=[CpaValidation.from_row(r) for r in rows if r is not None],
    )
