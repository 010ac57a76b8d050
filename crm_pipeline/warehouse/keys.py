"""Safe Dagster partition keys for customers identified by (source database, customer id).

A key is ``<db>.<customer>`` when both parts are plain (letters, digits, ``_``, ``-``);
otherwise the unsafe characters become ``_`` and a short hash of the exact pair is
appended, so two different customers never share a key and a key is stable across runs.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_PART = 40


def _slug(text: str) -> tuple[str, bool]:
    """(slug, exact) where exact means the slug is the text itself."""
    slug = _UNSAFE.sub("_", text)[:MAX_PART]
    return slug or "_", slug == text


def customer_partition_key(source_db: str, customer_id: str) -> str:
    """The partition key of one customer; deterministic, unique, safe for Dagster and URLs."""
    db_slug, db_exact = _slug(source_db)
    customer_slug, customer_exact = _slug(customer_id)
    key = f"{db_slug}.{customer_slug}"
    if db_exact and customer_exact:
        return key
    digest = hashlib.sha1(f"{source_db}\x00{customer_id}".encode()).hexdigest()[:10]
    return f"{key}~{digest}"


def customer_file_name(partition_key: str, suffix: str) -> str:
    """A file name for a customer's report or plot: its key made safe (any database name can be
    part of it) and a hash, so that two keys never share a file; ``suffix`` is e.g. ``.png``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", partition_key).strip("._")[:60]
    return f"{safe}-{hashlib.sha1(partition_key.encode()).hexdigest()[:8]}{suffix}"
