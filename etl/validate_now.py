"""On-demand CPA validation for one affiliate's network (the API's ``validateCpa``).

It is an ETL cycle (same code, same ledger rules, same lock) that pulls what changed in the
source and reconsiders every unvalidated user of the affiliate's network.
"""

from __future__ import annotations

from db.settings import Settings
from etl.sync import EtlError, run_cycle


async def validate_affiliate_network(
    robust_url: str, affiliate_id: int, settings: Settings, operation_url: str | None = None
) -> list[int]:
    """Run the validation now; returns the ids of the ledger rows written for that network."""
    source = operation_url or settings.operation_database_url
    if not source:
        raise EtlError("no operation database is configured (FATURE_OPERATION_DATABASE_URL)")
    result = await run_cycle(settings, robust_url, source, trigger="api", validate_network_of=affiliate_id)
    return result.new_validation_ids
