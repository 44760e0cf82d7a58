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
        description="An exact decimal number serialised as a string, never a float: money in BRL "
                    "(reais) with 2 places (\"1234.50\", rounded to the cent half away from zero), "
                    "or a share as a fraction of 1 (`revShareByLevel`: \"0.25\" is 25%). As input, "
                    "a string or a number.",
    ),
    dt.date: dataclasses.replace(
        DateDefinition,
        description="A local calendar date of the business time zone (FATURE_TIMEZONE, default "
                    "America/Sao_Paulo), ISO 8601: 2025-03-02.",
    ),
    dt.datetime: dataclasses.replace(
        DateTimeDefinition,
        description="An instant, ISO 8601 with its offset (2025-03-04T02:30:00+00:00). Sent "
                    "without an offset, it is read in the business time zone.",
    ),
}
