"""Forecasting detectors: predict each day, flag the days the forecast misses by too much.

The regressors (SVR, SGD, decision tree, AdaBoost, random forest) predict ``y`` from the
day's lag features; ARIMA forecasts one step ahead from the series itself and flags the
days outside its confidence interval.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Self

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import AdaBoostRegressor, RandomForestRegressor
from sklearn.linear_model import SGDRegressor
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR, LinearSVR
from sklearn.tree import DecisionTreeRegressor

from crm_pipeline.detectors.base import Detection, Detector, DetectorError, SeriesFrame, scale_floor
from crm_pipeline.detectors.thresholds import Criterion


class RegressorDetector(Detector):
    """A scikit-learn regressor on the lag features, with one of the four threshold criteria.

    Features and target are standardised (SVR's epsilon and SGD's step are in those units);
    trees are unaffected by the scaling. The fitted series itself is scored out of fold
    (``folds`` contiguous blocks, each predicted by a model fitted on the others): a flexible
    model scored on the days it learned would have learned the anomalies too.
    """

    name = "regressor"
    family = "forecasting"

    def __init__(
        self,
        criterion: str = "additive",
        tau: float = 2.0,
        k: float = 5.0,
        window: int = 90,
        sigma_floor: float = 0.25,
        folds: int = 3,
        seed: int = 0,
    ) -> None:
        if folds < 2:
            raise ValueError(f"{self.name}: folds must be at least 2, not {folds}")
        self.folds = folds
        self.criterion = criterion
        self.tau = tau
        self.k = k
        self.window = window
        self.sigma_floor = sigma_floor
        self.seed = seed
        self.rule_ = Criterion(criterion, tau, k, window)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.criterion}"

    def regressor(self) -> RegressorMixin:
        """The unfitted scikit-learn model (subclasses)."""
        raise NotImplementedError

    def fit(self, data: SeriesFrame) -> Self:
        self._check_length(data)
        self.model_ = self._model().fit(data.X, data.y)
        self.train_ = data
        self.out_of_fold_ = None
        self.fold_models_ = None
        self.floor_ = scale_floor(data.y, self.sigma_floor)
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        if np.array_equal(data.days, self.train_.days):
            return self.rule_.apply(data.y, self._out_of_fold(), np.empty(0), self.floor_)
        history = data.y[:0]
        if data.days[0] > self.train_.days[-1] and self.criterion.startswith("additive"):
            history = self.train_.y - self._out_of_fold()  # seeds sigma with honest residuals
        return self.rule_.apply(data.y, self.model_.predict(data.X), history, self.floor_)

    def _model(self) -> TransformedTargetRegressor:
        return TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), clone(self.regressor())), transformer=StandardScaler()
        )

    def _out_of_fold(self) -> np.ndarray:
        """Forecasts of the training days, each from a model that did not see it (cached)."""
        if self.out_of_fold_ is None:
            forecast = np.empty(len(self.train_))
            for days, model in self.fold_models():
                forecast[days] = model.predict(self.train_.X[days])
            self.out_of_fold_ = forecast
        return self.out_of_fold_

    def fold_models(self) -> list[tuple[np.ndarray, TransformedTargetRegressor]]:
        """Per block of training days (their positions), the model fitted on the other blocks:
        the one that forecast those days when the training series is scored (cached)."""
        if self.fold_models_ is None:
            X, y = self.train_.X, self.train_.y
            self.fold_models_ = [
                (test, self._model().fit(X[train], y[train])) for train, test in KFold(self.folds).split(X)
            ]
        return self.fold_models_

    def forecaster_of(self, data: SeriesFrame) -> list[tuple[np.ndarray, TransformedTargetRegressor]]:
        """Which fitted model forecast which positions of ``data`` in ``detect``."""
        if np.array_equal(data.days, self.train_.days):
            return self.fold_models()
        return [(np.arange(len(data)), self.model_)]


class SvrDetector(RegressorDetector):
    """Support vector regression (C = 100, epsilon = 0.1) with a linear, cubic or RBF kernel."""

    name = "svr"

    def __init__(self, kernel: str = "rbf", C: float = 100.0, epsilon: float = 0.1, **rule: object) -> None:  # noqa: N803
        super().__init__(**rule)
        if kernel not in ("linear", "poly", "rbf"):
            raise ValueError(f"svr: kernel must be linear, poly or rbf, not {kernel!r}")
        self.kernel = kernel
        self.C = C
        self.epsilon = epsilon

    @property
    def label(self) -> str:
        return f"svr_{self.kernel}/{self.criterion}"

    def regressor(self) -> RegressorMixin:
        if self.kernel == "linear":  # liblinear's primal solver: libsvm took ~50x longer here
            return LinearSVR(
                C=self.C,
                epsilon=self.epsilon,
                loss="squared_epsilon_insensitive",
                dual=False,
                random_state=self.seed,
            )
        return SVR(kernel=self.kernel, degree=3, C=self.C, epsilon=self.epsilon, max_iter=200_000)


class SgdDetector(RegressorDetector):
    name = "sgd"

    def regressor(self) -> RegressorMixin:
        return SGDRegressor(random_state=self.seed)


class DecisionTreeDetector(RegressorDetector):
    name = "decision_tree"

    def regressor(self) -> RegressorMixin:
        return DecisionTreeRegressor(random_state=self.seed, min_samples_leaf=5)


class AdaBoostDetector(RegressorDetector):
    """AdaBoost over shallow trees, 300 estimators."""

    name = "adaboost"

    def __init__(self, n_estimators: int = 300, **rule: object) -> None:
        super().__init__(**rule)
        self.n_estimators = n_estimators

    def regressor(self) -> RegressorMixin:
        return AdaBoostRegressor(n_estimators=self.n_estimators, random_state=self.seed)


class RandomForestDetector(RegressorDetector):
    """Random forest, 100 trees of depth at most 20."""

    name = "random_forest"

    def __init__(self, n_estimators: int = 100, max_depth: int = 20, **rule: object) -> None:
        super().__init__(**rule)
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    def regressor(self) -> RegressorMixin:
        return RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, random_state=self.seed, n_jobs=1
        )


class ArimaDetector(Detector):
    """ARIMA(p, d, q) with the order chosen on a grid by one-step MSE on a validation tail.

    The last ``max_points`` days are fitted (ARIMA's cost grows with the series). A day is
    anomalous outside the one-step forecast's ``1 - alpha`` confidence interval, widened to
    the sigma floor. Orders that fail or do not converge are skipped; if none fits, the
    series raises ``DetectorError``.
    """

    name = "arima"
    family = "forecasting"
    min_points = 40

    def __init__(
        self,
        max_order: int = 3,
        alpha: float = 0.05,
        max_points: int = 365,
        validation_share: float = 0.2,
        sigma_floor: float = 0.05,
    ) -> None:
        if not 0 <= max_order <= 5:
            raise ValueError(f"arima: max_order must be within 0..5, not {max_order}")
        if not 0 < alpha < 1:
            raise ValueError(f"arima: alpha must be within (0, 1), not {alpha}")
        self.max_order = max_order
        self.alpha = alpha
        self.max_points = max_points
        self.validation_share = validation_share
        self.sigma_floor = sigma_floor

    def fit(self, data: SeriesFrame) -> Self:
        self._check_length(data)
        y = data.y[-self.max_points :]
        split = int(len(y) * (1 - self.validation_share))
        best, errors = None, []
        for order in itertools.product(range(self.max_order + 1), repeat=3):
            try:
                fitted = _fit(y[:split], order)
                forecast = fitted.append(y[split:], refit=False).predict(start=split, end=len(y) - 1)
                mse = float(np.mean((y[split:] - forecast) ** 2))
            except Exception as exc:  # noqa: BLE001 - any failing order is skipped and reported
                errors.append(f"{order}: {exc}")
                continue
            if np.isfinite(mse) and (best is None or mse < best[0]):
                best = (mse, order)
        if best is None:
            raise DetectorError(f"arima: no order of the grid could be fitted ({'; '.join(errors[:3])})")
        self.order_ = best[1]
        self.result_ = _fit(y, self.order_)
        self.last_day_ = data.days[-1]
        self.floor_ = scale_floor(data.y, self.sigma_floor)
        return self

    def detect(self, data: SeriesFrame) -> Detection:
        if data.days[0] > self.last_day_:
            result = self.result_.append(data.y, refit=False)
            start = len(result.model.endog) - len(data.y)
        else:
            result, start = self.result_.apply(data.y), 0
        prediction = result.get_prediction(start=start, end=start + len(data.y) - 1)
        low, high = np.asarray(prediction.conf_int(alpha=self.alpha)).T
        half_width = np.nan_to_num((high - low) / 2, nan=np.inf)
        score = np.abs(data.y - np.asarray(prediction.predicted_mean))
        return Detection(score, np.maximum(half_width, self.floor_))


def _fit(y: np.ndarray, order: tuple[int, int, int]):  # noqa: ANN202 - a statsmodels results object
    """Fit one ARIMA order; convergence warnings count as failures."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            return ARIMA(y, order=order).fit()
        except ConvergenceWarning as exc:
            raise ValueError(f"did not converge: {exc}") from exc
