"""Statements built once per shape and run with the caller's values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter


class Shaped:
    """Statements built once per shape and run with the caller's values.

    A read's statements are the same SQL for every call with the same filters present,
    the same scope role, has_proxy and trash flags: only values differ, and every value
    is a named bind parameter. Built anew, they cost more CPU than PostgreSQL takes to
    answer a primary-key read (~0.25 ms for a get, ~0.5 ms for a list page and its
    total: construction and SQLAlchemy's cache-key walk); kept, a dictionary look-up. A
    statement is kept only if every parameter it binds is one the caller passes (checked
    once, when it is built), so no value of the call that built it can reach another call.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.built: dict[tuple[Any, ...], Select] = {}
        # The statements kept, by identity: ``owns`` tells the held read connections
        # (``held.py``) which statements bind nothing but the caller's named values.
        self.kept: dict[int, Select] = {}

    def get(
        self, key: tuple[Any, ...], values: dict[str, Any], build: Callable[[], Select]
    ) -> Select:
        key = (*key, frozenset(values))
        statement = self.built.get(key)
        if statement is None:
            statement = build()
            bound = {
                node.key for node in visitors.iterate(statement) if isinstance(node, BindParameter)
            }
            if bound != set(values):
                raise RuntimeError(f"statement binds {sorted(bound)}, given {sorted(values)}")
            if len(self.built) >= self.limit:
                self.built.clear()
                self.kept.clear()
            self.built[key] = statement
            self.kept[id(statement)] = statement
        return statement

    def owns(self, statement: object) -> bool:
        return self.kept.get(id(statement)) is statement


SHAPED = Shaped()
