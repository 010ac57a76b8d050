"""Trained deep models on disk (versioned weight files next to the warehouse) and the
``model_registry`` table that lists them.

Saving is write-then-record: the file is written under a temporary name and renamed into
place, and only then is the registry row inserted; a failed save removes what it wrote, and a
killed one leaves no row (at most a stray ``.tmp`` file), so scoring never finds a half-written
model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import torch

from crm_pipeline.detectors.deep.data import RangeScaler
from crm_pipeline.detectors.deep.errors import ErrorReference
from crm_pipeline.detectors.deep.fit import DeepSettings, TrainedModel
from crm_pipeline.detectors.deep.models import build_model
from crm_pipeline.detectors.deep.training import TrainingLog

REGISTRY_SQL = (Path(__file__).parent / "sql" / "model_registry.sql").read_text()
NEWEST_VERSIONS_SQL = (Path(__file__).parent / "sql" / "newest_versions.sql").read_text()
FORMAT = 1


class ModelMismatchError(ValueError):
    """A saved model does not fit the data it is asked to score (say which columns differ)."""


def models_dir(warehouse_path: str | Path) -> Path:
    """Where weight files live: ``models/`` beside the DuckDB file."""
    return Path(warehouse_path).resolve().parent / "models"


def new_version(trained: TrainedModel, run_id: str) -> str:
    """``<model>-<mode>-<UTC time>-<8 hex of the run>``: sortable and unique per run."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run = hashlib.sha1(run_id.encode()).hexdigest()[:8]
    return f"{trained.settings.model}-{trained.settings.mode}-{stamp}-{run}"


def _stack(values: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(values).astype(np.float64))


def to_payload(trained: TrainedModel) -> dict:
    """Everything a model needs to score again, as tensors and plain values (loads with
    ``weights_only=True``: no pickled code)."""
    keys = trained.customers
    refs = [trained.references[k] for k in keys]
    return {
        "format": FORMAT,
        "settings": {**dataclasses.asdict(trained.settings), "thresholds": list(trained.settings.thresholds)},
        "hyperparameters": trained.model.hyperparameters(),
        "columns": list(trained.columns),
        "customers": keys,
        "groups": [trained.groups[k] for k in keys],
        "scaler_minimum": _stack([trained.scalers[k].minimum for k in keys]),
        "scaler_scale": _stack([trained.scalers[k].scale for k in keys]),
        "reference_low": torch.tensor([r.low for r in refs], dtype=torch.float64),
        "reference_high": torch.tensor([r.high for r in refs], dtype=torch.float64),
        "reference_mean": _stack([r.mean for r in refs]),
        "reference_precision": _stack([r.precision for r in refs]),
        "state_dict": trained.model.state_dict(),
        "epoch_losses": list(trained.log.epoch_losses),
        "skipped": dict(trained.skipped),
        "device": trained.device,
        "seconds": trained.seconds,
    }


def from_payload(payload: dict) -> TrainedModel:
    """The inverse of ``to_payload``."""
    if payload.get("format") != FORMAT:
        raise ModelMismatchError(f"model file format {payload.get('format')!r}; this version reads {FORMAT}")
    settings = DeepSettings(**{**payload["settings"], "thresholds": tuple(payload["settings"]["thresholds"])})
    groups = payload["state_dict"][next(iter(payload["state_dict"]))].shape[0]
    model = build_model(settings.model, [0] * groups, **payload["hyperparameters"])
    model.load_state_dict(payload["state_dict"])
    keys = payload["customers"]
    scalers, references = {}, {}
    for i, key in enumerate(keys):
        scalers[key] = RangeScaler(payload["scaler_minimum"][i].numpy(), payload["scaler_scale"][i].numpy())
        references[key] = ErrorReference(
            float(payload["reference_low"][i]),
            float(payload["reference_high"][i]),
            payload["reference_mean"][i].numpy(),
            payload["reference_precision"][i].numpy(),
        )
    return TrainedModel(
        settings,
        model.eval(),
        tuple(payload["columns"]),
        keys,
        dict(zip(keys, payload["groups"], strict=True)),
        scalers,
        references,
        TrainingLog(epoch_losses=payload["epoch_losses"]),
        payload["skipped"],
        payload["device"],
        payload["seconds"],
    )


def save_model(
    con: duckdb.DuckDBPyConnection,
    trained: TrainedModel,
    directory: Path,
    run_id: str,
    window: tuple[date | None, date | None],
    windows: int,
) -> tuple[str, Path]:
    """Write ``trained`` as a new version and record it; returns (version, path)."""
    version = new_version(trained, run_id)
    path = directory / trained.settings.model / f"{version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".pt.tmp")
    try:
        torch.save(to_payload(trained), temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    con.execute(REGISTRY_SQL)
    try:
        con.execute(
            "INSERT INTO model_registry VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
            [
                trained.settings.model,
                version,
                trained.settings.mode,
                len(trained.customers),
                len(trained.skipped),
                windows,
                window[0],
                window[1],
                trained.settings.epochs,
                trained.log.epoch_losses[-1] if trained.log.epoch_losses else None,
                trained.device,
                trained.seconds,
                str(path),
                json.dumps(list(trained.columns)),
                run_id,
                list(trained.customers),
            ],
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return version, path


def registered_version(
    con: duckdb.DuckDBPyConnection, model: str, version: str | None = None
) -> tuple[str, Path]:
    """The registered ``version`` of ``model`` (the newest when None) and its file; a
    ``LookupError`` says when there is none."""
    con.execute(REGISTRY_SQL)
    query = "SELECT version, path FROM model_registry WHERE model = ?"
    params: list[object] = [model]
    if version:
        query += " AND version = ?"
        params.append(version)
    rows = con.execute(query + " ORDER BY created_at DESC, version DESC LIMIT 1", params).fetchall()
    if not rows:
        wanted = f"version {version!r} of {model!r}" if version else f"trained {model!r} model"
        raise LookupError(f"model_registry has no {wanted}: run the deep training job first")
    return rows[0][0], Path(rows[0][1])


def load_model(
    con: duckdb.DuckDBPyConnection, model: str, version: str | None = None
) -> tuple[str, TrainedModel]:
    """The registered ``version`` of ``model`` (the newest when None) and its weights."""
    found, path = registered_version(con, model, version)
    if not path.exists():
        raise FileNotFoundError(f"model {found} is registered at {path}, but the file is gone")
    return found, from_payload(torch.load(path, weights_only=True))


def newest_versions(
    con: duckdb.DuckDBPyConnection, model: str, partition_keys: Sequence[str]
) -> dict[str, str]:
    """Each customer's newest registered version of ``model`` that was trained on it; customers
    no version holds are left out. A backfill of a few customers makes a version of its own, and
    the others keep being scored by the version that holds them."""
    con.execute(REGISTRY_SQL)
    _record_customer_keys(con, model)
    rows = con.execute(NEWEST_VERSIONS_SQL, [list(partition_keys), model]).fetchall()
    return dict(rows)


def _record_customer_keys(con: duckdb.DuckDBPyConnection, model: str) -> None:
    """Fill ``customer_keys`` of versions registered before the column existed, from their
    files (once: the column is stored); a version whose file is gone stays unmatched."""
    missing = con.execute(
        "SELECT version, path FROM model_registry WHERE model = ? AND customer_keys IS NULL", [model]
    ).fetchall()
    for version, path in missing:
        if Path(path).exists():
            keys = torch.load(path, weights_only=True)["customers"]
            con.execute("UPDATE model_registry SET customer_keys = ? WHERE version = ?", [keys, version])


def check_columns(trained: TrainedModel, columns: tuple[str, ...], version: str) -> None:
    """Refuse to score when the saved model's input columns are not the data's."""
    if tuple(trained.columns) != tuple(columns):
        missing = [c for c in trained.columns if c not in columns]
        extra = [c for c in columns if c not in trained.columns]
        detail = f"missing {missing}, new {extra}" if missing or extra else "same columns, another order"
        raise ModelMismatchError(
            f"model {version} was trained on columns {list(trained.columns)} but the data has "
            f"{list(columns)} ({detail}): retrain before scoring"
        )
