"""Database selection in the manner of SQL Server's ``sp_ineachdb``.

Filtering happens in Python on the listed catalog, so no user-supplied name or
pattern is ever spliced into SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class DatabaseInfo:
    """One database as listed by a dialect's catalog query."""

    name: str
    is_system: bool = False
    is_online: bool = True


@lru_cache(maxsize=256)
def like_to_regex(pattern: str, ignore_case: bool = True) -> re.Pattern[str]:
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
    return re.compile("".join(out), (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _fold(ignore_case: bool) -> Callable[[str], str]:
    """How a database name is compared: case-folded, or as it is."""
    return str.casefold if ignore_case else str


@dataclass(frozen=True)
class DatabaseFilter:
    """Which databases a run visits: ``sp_ineachdb``'s user_only, state, lists and patterns.

    ``include`` and ``exclude`` are exact names; ``name_pattern`` and ``exclude_pattern`` are
    ``LIKE`` patterns (``%``, ``_`` and ``\\`` as escape; SQL Server's ``[...]`` classes are
    literal characters here). Names and patterns compare as the server compares database names
    (``ignore_case``, which every caller states): SQL Server's default collation ignores case,
    PostgreSQL and a folder of files do not, so there ``Sales`` and ``sales`` are two databases.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    name_pattern: str | None = None
    exclude_pattern: str | None = None
    user_only: bool = True
    online_only: bool = True

    def select(self, databases: list[DatabaseInfo], *, ignore_case: bool) -> list[DatabaseInfo]:
        """The accepted databases, sorted by name so runs are reproducible."""
        fold = _fold(ignore_case)
        include = {fold(n) for n in self.include}
        exclude = {fold(n) for n in self.exclude}

        def matches(pattern: str | None, name: str) -> bool:
            return bool(pattern) and like_to_regex(pattern, ignore_case).fullmatch(name) is not None

        def accepts(db: DatabaseInfo) -> bool:
            if (self.user_only and db.is_system) or (self.online_only and not db.is_online):
                return False
            if (include and fold(db.name) not in include) or fold(db.name) in exclude:
                return False
            if self.name_pattern and not matches(self.name_pattern, db.name):
                return False
            return not matches(self.exclude_pattern, db.name)

        return sorted((d for d in databases if accepts(d)), key=lambda d: d.name)

    def unknown_includes(self, databases: list[DatabaseInfo], *, ignore_case: bool) -> list[str]:
        """The ``include`` names that name none of ``databases``: a typo, or the wrong case
        where case counts."""
        fold = _fold(ignore_case)
        listed = {fold(d.name) for d in databases}
        return [n for n in self.include if fold(n) not in listed]
