"""Scalars: money as exact decimal strings, dates and instants as ISO 8601."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal

from strawberry.schema.types.base_scalars import (
    DateDefinition,
    DateTimeDefinition,
    DecimalDefinition,
)
from strawberry.types.scalar import ScalarDefinition

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    decimal.Decimal: dataclasses.replace(
        DecimalDefinition,
        description="Money: an exact decimal (reais, 2 places) serialised as a string, never a float.",
    ),
    dt.date: dataclasses.replace(DateDefinition, description="A local calendar date, ISO 8601 (2025-03-02)."),
    dt.datetime: dataclasses.replace(
        DateTimeDefinition,
        description="An instant, ISO 8601 with offset (2025-03-04T02:30:00+00:00).",
    ),
}
