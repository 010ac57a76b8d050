"""Pipeline settings: one YAML file (``CRM_PIPELINE_CONFIG``) or the embedded demo defaults.

Credentials never live here: a server source names the environment variable that holds
its ODBC connection string (``connection_string_env``) or a secrets file outside the
repository (``connection_string_file``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV = "CRM_PIPELINE_CONFIG"
DEMO_DIR_ENV = "CRM_DEMO_DIR"
SECTIONS = ("warehouse", "source", "partitions", "compute", "execution")
# Settings that are paths: relative ones are taken relative to the settings file.
PATH_KEYS = {"warehouse": ("path",), "source": ("sqlite_dir", "connection_string_file")}


def demo_dir() -> Path:
    """Where the embedded demo keeps its tenant files and warehouse (``CRM_DEMO_DIR``)."""
    return Path(os.environ.get(DEMO_DIR_ENV, ".demo")).absolute()


def default_settings() -> dict[str, Any]:
    """The embedded demo: SQLite tenants under the demo folder, warehouse beside them."""
    base = demo_dir()
    return {
        "warehouse": {"path": str(base / "warehouse.duckdb")},
        "source": {"kind": "sqlite", "sqlite_dir": str(base / "tenants")},
        "partitions": {"start": "2008-01-01"},
        "compute": {"device": "auto"},
        "execution": {"executor": "multiprocess"},
    }


def load_settings(path: str | Path | None = None) -> dict[str, Any]:
    """Settings from ``path`` (or ``$CRM_PIPELINE_CONFIG``) laid over the demo defaults.

    Relative paths in the file are taken relative to the file's folder.
    """
    settings = default_settings()
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return settings
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{CONFIG_ENV} points at {file}, which is not a file")
    loaded = yaml.safe_load(file.read_text()) or {}
    unknown = set(loaded) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{file}: unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    for section in SECTIONS:
        settings[section] = {**settings[section], **(loaded.get(section) or {})}
    more = (loaded.get("source") or {}).get("more_sources")
    if more is not None and not (isinstance(more, list) and all(isinstance(m, dict) for m in more)):
        raise ValueError(f"{file}: source.more_sources must be a list of sources, each a mapping")
    for section, keys in PATH_KEYS.items():
        given = loaded.get(section) or {}
        settings[section] |= _absolute(given, keys, file.parent)
        if section == "source" and given.get("more_sources"):
            settings[section]["more_sources"] = [
                {**more, **_absolute(more, keys, file.parent)} for more in given["more_sources"]
            ]
    return settings


def _absolute(given: dict[str, Any], keys: tuple[str, ...], base: Path) -> dict[str, str]:
    """The relative paths among ``given[keys]``, made absolute under ``base``."""
    return {
        key: str((base / given[key]).absolute())
        for key in keys
        if given.get(key) and not Path(given[key]).is_absolute()
    }
