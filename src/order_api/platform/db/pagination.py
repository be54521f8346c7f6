"""Page-numbered listings: the query every list endpoint takes, and the page it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

MAX_PAGE_SIZE = 100
ItemT = TypeVar("ItemT")


class PageQuery(BaseModel):
    # Bounded so that OFFSET always fits a 64-bit integer, whatever the page size.
    page: int = Field(default=1, ge=1, le=1_000_000, description="1-based page number.")
    page_size: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE, description="Items per page.")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int = Field(description="Items matching the filters, on every page.")
    page: int
    page_size: int


async def fetch_page(
    session: AsyncSession,
    query: PageQuery,
    statement: Select[ItemT],
    options: Sequence[ORMOption] = (),
) -> tuple[list[ItemT], int]:
    """One page of a filtered, ordered SELECT, and how many rows match across every page.

    Loader `options` apply to the page only, so the count stays one plain statement.
    """
    count: Select[Any] = statement.with_only_columns(func.count(), maintain_column_froms=True)
    total = await session.scalar(count.order_by(None))
    page = statement.options(*options).offset(query.offset).limit(query.page_size)
    return list(await session.scalars(page)), total or 0
