import pytest

from crm_pipeline.sources.odbc import (
    parse_connection_string,
    redact,
    redact_message,
    with_database,
)

BASE = "Driver={PostgreSQL Unicode};Server=db.local;Port=5432;Uid=crm;Pwd={p;w}}d};Database=postgres;"


def test_parse_honours_braces_and_doubled_closing_brace():
    pairs = dict(parse_connection_string(BASE))
    assert pairs["Pwd"] == "p;w}d"
    assert pairs["Driver"] == "PostgreSQL Unicode"


@pytest.mark.parametrize(
    "name", ["plain", "semi;colon", "brace}name", "x;Database=other", "quote'\"[]", "{open"]
)
def test_with_database_keeps_any_name_literal(name):
    pairs = parse_connection_string(with_database(BASE, name))
    databases = [v for k, v in pairs if k.lower() == "database"]
    assert databases == [name]
    assert dict(pairs)["Pwd"] == "p;w}d"


def test_redact_hides_passwords():
    assert "p;w" not in redact(BASE) and "***" in redact(BASE)
    assert redact_message("login failed for p;w}d", BASE) == "login failed for ***"


def test_malformed_string_is_an_error():
    with pytest.raises(ValueError, match="malformed"):
        parse_connection_string("Driver")
