"""Column types shared by the tables and the migrations."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from agent_control_plane.types.values import MONEY_SCALE, tidy


class Money(TypeDecorator[Decimal]):
    """An exact amount with `MONEY_SCALE` decimal places.

    PostgreSQL stores NUMERIC(30, 9). SQLite has no exact decimal type (its NUMERIC is a float), so there the
    amount is stored as an integer count of 10^-9 units; arithmetic in SQL stays exact on both.
    """

    impl = Numeric(30, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(30, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return int(Decimal(value).scaleb(MONEY_SCALE))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return tidy(Decimal(int(value)).scaleb(-MONEY_SCALE))
        return tidy(Decimal(value))
