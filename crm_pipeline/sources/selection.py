"""Database selection in the manner of SQL Server's ``sp_ineachdb``.

Filtering happens in Python on the listed catalog, so no user-supplied name or
pattern is ever spliced into SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class DatabaseInfo:
    """One database as listed by a dialect's catalog query."""

    name: str
    is_system: bool = False
    is_online: bool = True


@lru_cache(maxsize=256)
def like_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a SQL ``LIKE`` pattern (``%`` any run, ``_`` one char, ``\\`` escape)."""
    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class DatabaseFilter:
    """Which databases a run visits: ``sp_ineachdb``'s user_only, state, lists and patterns.

    ``include`` and ``exclude`` are exact names (case-insensitive, like SQL Server's
    default collation); ``name_pattern`` and ``exclude_pattern`` are ``LIKE`` patterns.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name_pattern: str | None = None
    exclude_pattern: str | None = None
    user_only: bool = True
    online_only: bool = True
    _include_folded: frozenset[str] = field(init=False, repr=False, compare=False)
    _exclude_folded: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include_folded", frozenset(n.casefold() for n in self.include))
        object.__setattr__(self, "_exclude_folded", frozenset(n.casefold() for n in self.exclude))

    def accepts(self, db: DatabaseInfo) -> bool:
        """True when ``db`` is visited by a run with this filter."""
        folded = db.name.casefold()
        if self.user_only and db.is_system:
            return False
        if self.online_only and not db.is_online:
            return False
        if self._include_folded and folded not in self._include_folded:
            return False
        if folded in self._exclude_folded:
            return False
        if self.name_pattern and not like_to_regex(self.name_pattern).fullmatch(db.name):
            return False
        return not (self.exclude_pattern and like_to_regex(self.exclude_pattern).fullmatch(db.name))

    def select(self, databases: list[DatabaseInfo]) -> list[DatabaseInfo]:
        """The accepted databases, sorted by name so runs are reproducible."""
        return sorted((d for d in databases if self.accepts(d)), key=lambda d: d.name)
