from crm_pipeline.sources.selection import DatabaseFilter, DatabaseInfo, like_to_regex

DBS = [
    DatabaseInfo("master", is_system=True),
    DatabaseInfo("crm_2018"),
    DatabaseInfo("crm_2019"),
    DatabaseInfo("CRM_archive"),
    DatabaseInfo("crm_offline", is_online=False),
    DatabaseInfo("hr"),
]


def names(f: DatabaseFilter) -> list[str]:
    return [d.name for d in f.select(DBS)]


def test_defaults_visit_online_user_databases_sorted():
    assert names(DatabaseFilter()) == ["CRM_archive", "crm_2018", "crm_2019", "hr"]


def test_system_and_offline_only_when_asked():
    assert "master" in names(DatabaseFilter(user_only=False))
    assert "crm_offline" in names(DatabaseFilter(online_only=False))


def test_include_exclude_lists_are_case_insensitive():
    assert names(DatabaseFilter(include=("CRM_2018", "hr"))) == ["crm_2018", "hr"]
    assert names(DatabaseFilter(exclude=("HR", "crm_archive"))) == ["crm_2018", "crm_2019"]


def test_like_patterns():
    assert names(DatabaseFilter(name_pattern="crm[_]%")) == []  # brackets are literal
    assert names(DatabaseFilter(name_pattern="crm_20__")) == ["crm_2018", "crm_2019"]
    assert names(DatabaseFilter(name_pattern="crm%", exclude_pattern="%archive")) == [
        "crm_2018",
        "crm_2019",
    ]


def test_like_escape_and_regex_metacharacters_are_literal():
    assert like_to_regex(r"a\%b").fullmatch("a%b")
    assert not like_to_regex(r"a\%b").fullmatch("axb")
    assert like_to_regex("a.b(").fullmatch("a.b(")
    assert not like_to_regex("a.b").fullmatch("axb")
