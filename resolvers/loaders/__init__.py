"""Request-scoped DataLoaders, built lazily on first use (never module-level: they cache)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

from resolvers.loaders.affiliate import AffiliateByIdLoader, UplineIdsByAffiliateIdLoader
from resolvers.loaders.network import NetworkByAffiliateIdLoader
from resolvers.loaders.referral import ReferralCountByAffiliateLoader, ReferralPageByAffiliateLoader
from resolvers.loaders.summary import SummariesByAffiliateAndPeriodLoader
from resolvers.loaders.transaction import (
    TransactionCountByAffiliateLoader,
    TransactionPageByAffiliateLoader,
)
from resolvers.loaders.validation import (
    CpaValidationByIdLoader,
    CpaValidationCountByAffiliateLoader,
    CpaValidationPageByAffiliateLoader,
)
from resolvers.viewer import DataAccess

L = TypeVar("L")


class Loaders:
    """One instance of each loader per request."""

    def __init__(self, access: DataAccess) -> None:
        self.access = access
        self._extra: dict[str, Any] = {}

    def extra(self, name: str, build: Callable[[], L]) -> L:
        """A loader built above this package (it needs more than ``DataAccess``), once per
        request like the others."""
        found = self._extra.get(name)
        if found is None:
            found = self._extra[name] = build()
        return found

    @cached_property
    def affiliate_by_id(self) -> AffiliateByIdLoader:
        return AffiliateByIdLoader(self.access)

    @cached_property
    def upline_ids_by_affiliate_id(self) -> UplineIdsByAffiliateIdLoader:
        return UplineIdsByAffiliateIdLoader(self.access)

    @cached_property
    def network_by_affiliate_id(self) -> NetworkByAffiliateIdLoader:
        return NetworkByAffiliateIdLoader(self.access)

    @cached_property
    def summaries_by_affiliate_and_period(self) -> SummariesByAffiliateAndPeriodLoader:
        return SummariesByAffiliateAndPeriodLoader(self.access)

    @cached_property
    def referral_page_by_affiliate(self) -> ReferralPageByAffiliateLoader:
        return ReferralPageByAffiliateLoader(self.access)

    @cached_property
    def referral_count_by_affiliate(self) -> ReferralCountByAffiliateLoader:
        return ReferralCountByAffiliateLoader(self.access)

    @cached_property
    def cpa_validation_page_by_affiliate(self) -> CpaValidationPageByAffiliateLoader:
        return CpaValidationPageByAffiliateLoader(self.access)

    @cached_property
    def cpa_validation_count_by_affiliate(self) -> CpaValidationCountByAffiliateLoader:
        return CpaValidationCountByAffiliateLoader(self.access)

    @cached_property
    def cpa_validation_by_id(self) -> CpaValidationByIdLoader:
        return CpaValidationByIdLoader(self.access)

    @cached_property
    def transaction_page_by_affiliate(self) -> TransactionPageByAffiliateLoader:
        return TransactionPageByAffiliateLoader(self.access)

    @cached_property
    def transaction_count_by_affiliate(self) -> TransactionCountByAffiliateLoader:
        return TransactionCountByAffiliateLoader(self.access)
