"""One page of a listing and its ``page_info``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Page:
    items: list[Any]
    page: int
    limit: int
    total: int

    def page_info(self) -> dict[str, int]:
        return {
            "limit_per_page": self.limit,
            "page": self.page,
            "total_page": math.ceil(self.total / self.limit),
            "total_results": self.total,
        }


def paginate(items: list[Any], page: int, limit: int) -> Page:
    start = (page - 1) * limit
    return Page(items[start : start + limit], page, limit, len(items))
