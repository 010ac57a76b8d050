"""ODBC connection strings: parse, rebuild with a database, and redact for messages.

Values are brace-quoted on output (``}`` doubled), so a database name holding ``;``,
``=`` or braces cannot add or change connection attributes.
"""

from __future__ import annotations

import re

SECRET_KEYS = frozenset({"pwd", "password", "accesstoken", "token", "secret"})
DATABASE_KEYS = frozenset({"database", "initial catalog"})


def parse_connection_string(text: str) -> list[tuple[str, str]]:
    """Split ``key=value;key={va;lue}`` into pairs, honouring ``{}`` quoting and ``}}``."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in "; \t\r\n":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"malformed ODBC connection string near {text[i : i + 20]!r}")
        key = text[i:eq].strip()
        i = eq + 1
        if i < n and text[i] == "{":
            i += 1
            value_chars: list[str] = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated '{{' in value of {key!r}")
                if text[i] == "}":
                    if i + 1 < n and text[i + 1] == "}":
                        value_chars.append("}")
                        i += 2
                        continue
                    i += 1
                    break
                value_chars.append(text[i])
                i += 1
            value = "".join(value_chars)
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        pairs.append((key, value))
    return pairs


def quote_value(value: str) -> str:
    """Brace-quote an ODBC attribute value so any character is taken literally."""
    return "{" + value.replace("}", "}}") + "}"


def build_connection_string(pairs: list[tuple[str, str]]) -> str:
    """Join pairs back into a connection string; values that need it are brace-quoted."""
    parts = []
    for key, value in pairs:
        plain = re.fullmatch(r"[A-Za-z0-9 ._:/\\-]*", value) is not None
        parts.append(f"{key}={value if plain else quote_value(value)}")
    return ";".join(parts) + ";"


def with_database(connection_string: str, database: str, key: str = "Database") -> str:
    """The same connection string pointed at ``database`` (any existing database key replaced)."""
    pairs = [
        (k, v) for k, v in parse_connection_string(connection_string) if k.casefold() not in DATABASE_KEYS
    ]
    # Database names are always brace-quoted, whatever characters they hold.
    return build_connection_string(pairs) + f"{key}={quote_value(database)};"


def redact(connection_string: str) -> str:
    """The connection string with passwords and tokens replaced by ``***``, for logs and errors."""
    try:
        pairs = parse_connection_string(connection_string)
    except ValueError:
        return "<unparseable connection string>"
    return build_connection_string([(k, "***" if k.casefold() in SECRET_KEYS else v) for k, v in pairs])


def redact_message(message: str, connection_string: str) -> str:
    """Remove any secret value of ``connection_string`` that a driver echoed into ``message``."""
    try:
        pairs = parse_connection_string(connection_string)
    except ValueError:
        return message
    for key, value in pairs:
        if key.casefold() in SECRET_KEYS and value:
            message = message.replace(value, "***")
    return message
