"""Who may use a field, declared where the field is declared (strawberry permission classes).

Roles come from the verified token (``resolvers.viewer.Viewer``). Which rows a viewer may see
(an affiliate: itself and its downline) is data scoping, not a field permission: it is
enforced in ``resolvers.viewer.DataAccess``, which every read goes through.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from resolvers.errors import Forbidden


class _RolePermission(BasePermission):
    def on_unauthorized(self) -> None:
        # The same FORBIDDEN error (code and message) as every other refusal of the API.
        raise Forbidden(self.message or "Forbidden")


class AdminOnly(_RolePermission):
    """Mutations and the audit log: admin tokens only."""

    message = "Only admin tokens may run mutations"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return bool(info.context.viewer.may_run_mutations())


class StaffOnly(_RolePermission):
    """Program-wide reads (every plan, simulations): admin and analyst tokens."""

    message = "Only admin and analyst tokens may read this"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return bool(info.context.viewer.sees_everyone)
