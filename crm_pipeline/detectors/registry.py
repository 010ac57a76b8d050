"""Every detector by name: adding a detector is one class and one line here."""

from __future__ import annotations

from collections.abc import Mapping

from crm_pipeline.detectors.base import Detector
from crm_pipeline.detectors.clustering import (
    AgglomerativeDetector,
    DbscanDetector,
    IsolationForestDetector,
    KMeansDetector,
)
from crm_pipeline.detectors.deep.detector import DeepAntDetector, LstmAutoencoderDetector
from crm_pipeline.detectors.forecasting import (
    AdaBoostDetector,
    ArimaDetector,
    DecisionTreeDetector,
    RandomForestDetector,
    SgdDetector,
    SvrDetector,
)

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        ArimaDetector,
        SvrDetector,
        SgdDetector,
        DecisionTreeDetector,
        AdaBoostDetector,
        RandomForestDetector,
        KMeansDetector,
        DbscanDetector,
        AgglomerativeDetector,
        IsolationForestDetector,
        DeepAntDetector,
        LstmAutoencoderDetector,
    )
}


def build_detector(name: str, params: Mapping[str, object] | None = None) -> Detector:
    """The detector ``name`` with ``params``; an unknown name or parameter raises ``ValueError``
    naming it and what is allowed (before any work starts)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known detectors: {', '.join(sorted(DETECTORS))}")
    try:
        return DETECTORS[name](**dict(params or {}))
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: bad parameters {dict(params or {})!r} ({exc})") from exc
