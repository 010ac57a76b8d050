"""Unsupervised detectors on the day's value and lag features (standardised per customer).

k-means and agglomerative clustering flag the days in clusters of at most ``p`` points,
DBSCAN flags its noise points, IsolationForest the days its trees isolate quickly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Self

import numpy as np
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from crm_pipeline.detectors.base import Detection, Detector, DetectorError, SeriesFrame

#: The features the clustering detectors see beside the day's value: its slow context. The
#: short lags and the weekly average are left out on purpose: the days after a spike carry it
#: there and would be flagged with it (on the demo data, k-means went from P 0.88 / R 0.45
#: with the weekly average to P 0.89 / R 0.77 without it).
CONTEXT = ("month_avg", "quarter_avg")
#: Silhouette is quadratic in the points; larger series are scored on a seeded sample.
SILHOUETTE_SAMPLE = 2000


class ClusterDetector(Detector):
    """Shared parts: points standardised with the training series' scaler. ``quality_`` holds
    the fitted clustering's silhouette, Davies-Bouldin and Calinski-Harabasz indices."""

    def __init__(self, features: Sequence[str] | None = CONTEXT) -> None:
        self.features = tuple(features) if features is not None else None

    def _points(self, data: SeriesFrame) -> np.ndarray:
        return self.scaler_.transform(data.points(self.features))

    def _fit_scaler(self, data: SeriesFrame) -> np.ndarray:
        self._check_length(data)
        self.scaler_ = StandardScaler().fit(data.points(self.features))
        return self._points(data)


def cluster_quality(points: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The three cluster-quality indices of a labelling (noise label -1 counts as a cluster)."""
    if len(set(labels.tolist())) < 2 or len(set(labels.tolist())) >= len(labels):
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    sample = min(SILHOUETTE_SAMPLE, len(labels))
    return {
        "silhouette": float(silhouette_score(points, labels, sample_size=sample, random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(points, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(points, labels)),
    }


def small_cluster_detection(labels: np.ndarray, p: int) -> Detection:
    """Score = how many points a day's cluster lacks to hold more than ``p``; flag when > 0."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    score = (p + 1 - counts[inverse]).astype(float)
    return Detection(score, np.zeros(len(labels)))


class KMeansDetector(ClusterDetector):
    """k-means with k = 2..7 chosen by silhouette; a day is anomalous in a cluster of <= p days."""

    name = "kmeans"

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 7,
        p: int = 5,
        seed: int = 0,
        features: Sequence[str] | None = CONTEXT,
    ) -> None:
        super().__init__(features)
        if not 2 <= k_min <= k_max:
            raise ValueError(f"kmeans: need 2 <= k_min <= k_max, got {k_min}..{k_max}")
        self.k_min = k_min
        self.k_max = k_max
        self.p = p
        self.seed = seed

    def fit(self, data: SeriesFrame) -> Self:
        points = self._fit_scaler(data)
        best = None
        for k in range(self.k_min, min(self.k_max, len(points) - 1) + 1):
            with warnings.catch_warnings():  # fewer distinct points than k: expected, handled below
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(points)
            if len(set(model.labels_.tolist())) < 2:
                continue  # a constant series: every point in one place
            quality = silhouette_score(
                points, model.labels_, sample_size=min(SILHOUETTE_SAMPLE, len(points)), random_state=self.seed
            )
            if best is None or quality > best[0]:
                best = (quality, model)
        if best is None:
            raise DetectorError("kmeans: the points do not form two clusters (constant series?)")
        self.model_ = best[1]
        self.quality_ = cluster_quality(points, self.model_.labels_, self.seed)
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        return small_cluster_detection(self.model_.predict(self._points(data)), self.p)


class AgglomerativeDetector(ClusterDetector):
    """Single-linkage agglomerative clustering cut at a distance; days in groups of <= p are
    anomalous. The default cut-off is ``cutoff_factor`` x the 99th percentile of the
    nearest-neighbour distances: a day that far from every other day stands alone."""

    name = "agglomerative"

    def __init__(
        self,
        distance_threshold: float | None = None,
        cutoff_factor: float = 3.0,
        p: int = 5,
        features: Sequence[str] | None = CONTEXT,
    ) -> None:
        super().__init__(features)
        self.distance_threshold = distance_threshold
        self.cutoff_factor = cutoff_factor
        self.p = p

    def fit(self, data: SeriesFrame) -> Self:
        points = self._fit_scaler(data)
        self.cutoff_ = self.distance_threshold or self.cutoff_factor * float(
            np.quantile(_kth_neighbour_distance(points, 1), 0.99)
        )
        self.points_ = points
        self.labels_ = AgglomerativeClustering(
            n_clusters=None, distance_threshold=max(self.cutoff_, 1e-12), linkage="single"
        ).fit_predict(points)
        self.quality_ = cluster_quality(points, self.labels_)
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        points = self._points(data)
        if points.shape == self.points_.shape and np.array_equal(points, self.points_):
            return small_cluster_detection(self.labels_, self.p)
        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=max(self.cutoff_, 1e-12), linkage="single"
        ).fit_predict(np.vstack([self.points_, points]))
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        score = (self.p + 1 - counts[inverse][len(self.points_) :]).astype(float)
        return Detection(score, np.zeros(len(points)))


class DbscanDetector(ClusterDetector):
    """DBSCAN with minPts = 2 x dimensions (capped) and eps at the knee of the sorted
    minPts-nearest-neighbour distances. Score = distance to the nearest core day;
    a day farther than eps from every core day is noise, hence anomalous."""

    name = "dbscan"

    def __init__(
        self,
        eps: float | None = None,
        min_samples: int | None = None,
        eps_factor: float = 3.0,
        features: Sequence[str] | None = CONTEXT,
    ) -> None:
        super().__init__(features)
        self.eps = eps
        self.min_samples = min_samples
        self.eps_factor = eps_factor

    def fit(self, data: SeriesFrame) -> Self:
        points = self._fit_scaler(data)
        self.min_samples_ = self.min_samples or min(2 * points.shape[1], max(len(points) // 20, 3))
        self.eps_ = self.eps or self.eps_factor * knee(
            np.sort(_kth_neighbour_distance(points, self.min_samples_))
        )
        model = DBSCAN(eps=max(self.eps_, 1e-12), min_samples=self.min_samples_).fit(points)
        self.core_ = points[model.core_sample_indices_]
        if len(self.core_) == 0:
            raise DetectorError("dbscan: no core point at the derived eps (too few days?)")
        self.quality_ = cluster_quality(points, model.labels_)
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        distance, _ = NearestNeighbors(n_neighbors=1).fit(self.core_).kneighbors(self._points(data))
        return Detection(distance[:, 0], np.full(len(data), self.eps_))


class IsolationForestDetector(ClusterDetector):
    """IsolationForest, 100 trees; the score is minus scikit-learn's ``score_samples``."""

    name = "isolation_forest"

    def __init__(
        self,
        n_estimators: int = 100,
        contamination: float | str = 0.005,
        seed: int = 0,
        features: Sequence[str] | None = CONTEXT,
    ) -> None:
        super().__init__(features)
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.seed = seed

    def fit(self, data: SeriesFrame) -> Self:
        points = self._fit_scaler(data)
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators, contamination=self.contamination, random_state=self.seed
        ).fit(points)
        self.quality_ = {}
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        score = -self.model_.score_samples(self._points(data))
        return Detection(score, np.full(len(data), -self.model_.offset_))


def _kth_neighbour_distance(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point."""
    distance, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return distance[:, k]


def knee(sorted_values: np.ndarray) -> float:
    """The knee of an ascending curve: the point farthest below the chord from first to last."""
    n = len(sorted_values)
    if n < 3 or sorted_values[-1] == sorted_values[0]:
        return float(sorted_values[-1])
    x = np.linspace(0.0, 1.0, n)
    y = (sorted_values - sorted_values[0]) / (sorted_values[-1] - sorted_values[0])
    return float(sorted_values[int(np.argmax(x - y))])
