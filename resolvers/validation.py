"""Affiliate.cpaValidations (the ledger, newest first) and Mutation.validateCpa."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from db.engine import DatabaseUnavailable
from etl.sync import EtlBusy, EtlError
from etl.validate_now import validate_affiliate_network
from resolvers.arguments import as_datetime, as_int, check_first, check_level, decode_cursor, encode_cursor
from resolvers.context import Context
from resolvers.errors import Busy, NotAvailable, ServiceUnavailable
from resolvers.loaders.validation import ValidationArgs
from resolvers.pagination import Page, page_of

log = logging.getLogger("fature.api")

CURSOR_TAG = "cpa_validation"


async def cpa_validations_of(
    ctx: Context, affiliate_id: int, *, level: int | None, first: int | None, after: str | None
) -> Page[Any]:
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

    return page_of(page.rows, lambda r: encode_cursor(CURSOR_TAG, r.validation_date, r.id),
                   page.has_next_page, after, count)


async def validate_cpa(ctx: Context, affiliate_id: int) -> Sequence[Any]:
    """Run the ETL's CPA validation step now for this affiliate's network (same code, same
    ledger rules, same lock); the ledger rows it wrote. Admin only (declared on the field)."""
    if not ctx.settings.operation_database_url:
        raise NotAvailable("CPA validation on demand needs the operation database, which is not configured")
    try:
        ids = await validate_affiliate_network(ctx.robust_url, affiliate_id, ctx.settings)
    except EtlBusy as exc:
        raise Busy("An ETL cycle is running; try the validation again in a moment") from exc
    except (EtlError, DatabaseUnavailable, OSError) as exc:
        log.warning("validateCpa for %s failed: %s", affiliate_id, exc)
        raise ServiceUnavailable("The CPA validation could not run right now; try again shortly") from exc
    rows = await ctx.loaders.cpa_validation_by_id.load_many(list(ids))
    return [r for r in rows if r is not None]
