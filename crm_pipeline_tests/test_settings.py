"""The settings file: defaults, overrides, bad files named clearly."""

from pathlib import Path

import pytest

from crm_pipeline.settings import load_settings
from crm_pipeline.sources.selection import DatabaseFilter, DatabaseInfo

README = Path(__file__).parents[1] / "README.md"


def test_defaults_are_the_embedded_demo(monkeypatch, tmp_path):
    monkeypatch.delenv("CRM_PIPELINE_CONFIG", raising=False)
    monkeypatch.setenv("CRM_DEMO_DIR", str(tmp_path))
    settings = load_settings()
    assert settings["source"] == {"kind": "sqlite", "sqlite_dir": str(tmp_path / "tenants")}
    assert settings["warehouse"]["path"] == str(tmp_path / "warehouse.duckdb")


def test_file_overrides_and_resolves_relative_paths(tmp_path):
    config = tmp_path / "conf" / "crm.yaml"
    config.parent.mkdir()
    config.write_text(
        "warehouse:\n  path: w.duckdb\nsource:\n  kind: postgresql\n  workers: 2\n"
        "  connection_string_file: ../secrets/source.conn\n"
    )
    settings = load_settings(config)
    assert settings["warehouse"]["path"] == str(tmp_path / "conf" / "w.duckdb")
    assert settings["source"]["connection_string_file"] == str(
        tmp_path / "conf" / ".." / "secrets" / "source.conn"
    )
    assert settings["source"]["kind"] == "postgresql" and settings["source"]["workers"] == 2


def test_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PIPELINE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings()


def test_unknown_section_is_refused(tmp_path):
    config = tmp_path / "crm.yaml"
    config.write_text("sources:\n  kind: sqlite\n")
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['sources'\]"):
        load_settings(config)


def test_compute_section_reaches_the_resource(tmp_path):
    from crm_pipeline.definitions import build_definitions

    config = tmp_path / "crm.yaml"
    config.write_text("compute:\n  device: cpu\n  gpu_memory_budget_gb: 2\n")
    settings = load_settings(config)
    assert settings["compute"] == {"device": "cpu", "gpu_memory_budget_gb": 2}
    compute = build_definitions(settings).resources["compute"]
    assert compute.device == "cpu" and compute.torch_device().type == "cpu"


def test_readme_settings_example_loads_and_selects_what_it_says(tmp_path):
    """The README's settings file is valid, and its patterns pick what its comments promise."""
    text = README.read_text()
    start = text.index("```yaml\nwarehouse:") + len("```yaml\n")
    config = tmp_path / "crm.yaml"
    config.write_text(text[start : text.index("```", start)])
    source = load_settings(config)["source"]
    keys = ("include", "exclude", "name_pattern", "exclude_pattern")
    db_filter = DatabaseFilter(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in source.items() if k in keys}
    )
    listed = [DatabaseInfo(n) for n in ("crm_acme", "crm_scratch", "crm_2019_old", "crmx", "crm_gold", "hr")]
    assert [d.name for d in db_filter.select(listed, ignore_case=False)] == ["crm_acme", "crm_gold"]


def test_k8s_settings_pattern_selects_the_tenant_databases():
    """The shipped Kubernetes settings pick tenant_* databases (a pattern in the wrong quoting
    or with SQL Server brackets would pick none)."""
    source = load_settings(README.parent / "deploy" / "k8s" / "crm_pipeline.yaml")["source"]
    db_filter = DatabaseFilter(name_pattern=source["name_pattern"])
    listed = [DatabaseInfo(n) for n in ("tenant_01", "tenant_acme", "tenantx01", "postgres_tenant_01")]
    assert [d.name for d in db_filter.select(listed, ignore_case=False)] == ["tenant_01", "tenant_acme"]
