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
    return [d.name for d in f.select(DBS, ignore_case=True)]  # as on SQL Server


def test_defaults_visit_online_user_databases_sorted():
    assert names(DatabaseFilter()) == ["CRM_archive", "crm_2018", "crm_2019", "hr"]


def test_system_and_offline_only_when_asked():
    assert "master" in names(DatabaseFilter(user_only=False))
    assert "crm_offline" in names(DatabaseFilter(online_only=False))


def test_names_and_patterns_ignore_case_where_the_server_does():
    """SQL Server's default collation: CRM_2018 and crm_2018 are one database."""
    assert names(DatabaseFilter(include=("CRM_2018", "hr"))) == ["crm_2018", "hr"]
    assert names(DatabaseFilter(exclude=("HR", "crm_archive"))) == ["crm_2018", "crm_2019"]
    assert names(DatabaseFilter(name_pattern="crm_a%")) == ["CRM_archive"]


def test_names_and_patterns_keep_case_where_the_server_does():
    """PostgreSQL and file names: Sales and sales are two databases, a name picks one."""
    dbs = [DatabaseInfo("Sales"), DatabaseInfo("sales"), DatabaseInfo("hr")]
    picked = lambda f: [d.name for d in f.select(dbs, ignore_case=False)]  # noqa: E731
    assert picked(DatabaseFilter(include=("sales",))) == ["sales"]
    assert picked(DatabaseFilter(exclude=("Sales",))) == ["hr", "sales"]
    assert picked(DatabaseFilter(name_pattern="S%")) == ["Sales"]
    assert picked(DatabaseFilter(exclude_pattern="s%")) == ["Sales", "hr"]
    assert picked(DatabaseFilter(include=("SALES",))) == []


def test_unknown_includes_are_named():
    f = DatabaseFilter(include=("crm_2018", "CRM_2019", "crm_2020"))
    assert f.unknown_includes(DBS, ignore_case=True) == ["crm_2020"]
    assert f.unknown_includes(DBS, ignore_case=False) == ["CRM_2019", "crm_2020"]
    assert DatabaseFilter().unknown_includes(DBS, ignore_case=True) == []


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
