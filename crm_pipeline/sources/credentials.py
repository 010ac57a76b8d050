"""Where a server's connection string (and so its password) comes from: an environment
variable, or a secrets file outside the repository (a Kubernetes secret or Docker secret mount).

Nothing here logs the value; messages name the variable or the file, never what it holds.
"""

from __future__ import annotations

import os
from pathlib import Path


class CredentialsError(ValueError):
    """The connection string cannot be had; the message names the variable or file to fix."""


def git_work_tree(path: Path) -> Path | None:
    """The git work tree holding ``path``, if any (a folder above it with a ``.git`` entry)."""
    for folder in path.parents:
        if (folder / ".git").exists():
            return folder
    return None


def read_secrets_file(path: str | Path) -> str:
    """The connection string held in ``path`` (surrounding whitespace dropped).

    A file inside a git work tree is refused: one ``git add .`` would publish the password.
    """
    file = Path(path).expanduser().absolute()
    repo = git_work_tree(file)
    if repo is not None:
        raise CredentialsError(
            f"secrets file {file} lies inside the git work tree {repo}; keep credentials outside "
            "the repository (for example /run/secrets/crm_source or ~/.config/crm_pipeline/source)"
        )
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"secrets file {file} cannot be read: {exc.strerror}") from exc
    if not text:
        raise CredentialsError(f"secrets file {file} is empty; it must hold the ODBC connection string")
    return text


def connection_string(env_var: str, secrets_file: str | None, kind: str) -> str:
    """The connection string of a ``kind`` source: from ``secrets_file`` when one is set,
    else from the environment variable ``env_var``."""
    if secrets_file:
        return read_secrets_file(secrets_file)
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise CredentialsError(
            f"{kind} source: environment variable {env_var} is not set; it must hold the ODBC "
            "connection string (or set connection_string_file to a secrets file)"
        )
    return value
