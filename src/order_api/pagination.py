"""Page-numbered listings: the query every list endpoint takes, and the page it returns."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

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
