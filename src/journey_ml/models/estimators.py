"""The LightGBM estimators of the journey targets, calibrated on the validation period.

* :class:`NextStageModel` -- multiclass over the journey map's stage indices ``0..K-1``,
  optionally boosted from the first-order Markov chain; temperature-calibrated.
* :class:`DropOffModel` -- binary drop-off risk; Platt- or isotonic-calibrated.
* :class:`RevenueModel` -- expected value in the horizon (revenue, or conversions) with
  a Tweedie objective (log link); calibrated by one multiplicative scale.

Fitting, validation and persistence are :class:`~journey_ml.models.lightgbm.LightGBMEstimator`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_array

from journey_ml.exceptions import ModelBundleError, did_you_mean
from journey_ml.models.baselines import transition_matrix, transition_rows
from journey_ml.models.calibration import (
    BTYD_STACK_COLUMNS,
    CALIBRATION_METHODS,
    apply_binary,
    btyd_stack_margin,
    fit_binary,
    fit_btyd_stack,
    fit_scale,
    fit_temperature,
)
from journey_ml.models.lightgbm import DEFAULTS, META_FILE, LightGBMEstimator, estimator

__all__ = ["MODEL_CLASSES", "DropOffModel", "NextStageModel", "RevenueModel", "load_model"]


@estimator
class NextStageModel(ClassifierMixin, LightGBMEstimator):
    """Next journey stage (furthest stage reached by cutoff + horizon), LightGBM multiclass.

    ``predict_proba`` always has ``n_classes`` columns: a stage absent from training gets
    the Laplace floor ``1 / (n_train + n_classes)`` and the seen stages share the rest.
    Calibration is temperature scaling (:func:`~journey_ml.models.calibration.fit_temperature`).

    With ``stage_prior_column`` the booster starts from the first-order Markov chain: each
    row's initial logits are the log of its current stage's smoothed transition row, so
    the trees learn only the correction to "stays where it is".

    Parameters
    ----------
    n_classes : int, optional
        Number of stages ``K``; ``None`` infers ``max(y) + 1`` (pass it in pipelines).
    stage_prior_column : str, optional
        Feature column with the integer current stage; enables the Markov offset.
    stage_prior_smoothing : float
        Additive pseudo-count of the offset's transition counts.
    Other parameters: see :class:`LightGBMEstimator`.

    Attributes
    ----------
    classes_, trained_classes_ : the stages ``0..K-1``; those seen in training.
    stage_prior_, stage_prior_fallback_ : the offset's transition matrix and fallback row (or None).
    booster_, best_iteration_, calibrator_, calibration_report_, n_features_in_.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    >>> m = NextStageModel(n_classes=4, n_estimators=20).fit(X, y)
    >>> m.predict_proba(X[:2]).shape
    (2, 4)
    """

    n_classes: int | None = None
    stage_prior_column: str | None = None
    stage_prior_smoothing: float = 1.0

    _kind: ClassVar[str] = "next_stage"

    def _k(self) -> int:
        return int(self.classes_.size)

    def _objective_params(self) -> dict[str, Any]:
        return {"objective": "multiclass", "num_class": self._k(), "metric": "multi_logloss"}

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
        if ya.ndim != 1:
            raise ValueError(f"{name} must be 1-d stage indices, got shape {ya.shape}")
        if np.any(ya != np.round(ya)) or np.any(ya < 0):
            bad = ya[(ya != np.round(ya)) | (ya < 0)][0]
            raise ValueError(f"{name} must hold stage indices 0..K-1; got {bad.item()!r}")
        if self.n_classes is not None and ya.size and ya.max() >= self.n_classes:
            raise ValueError(
                f"{name} holds stage index {int(ya.max())} but n_classes={self.n_classes} "
                f"(allowed 0..{self.n_classes - 1})"
            )
        return ya

    def _set_classes(self, y: NDArray[np.float64]) -> None:
        if self.n_classes is not None and self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        k = self.n_classes if self.n_classes is not None else max(int(y.max()) + 1, 2)
        self.classes_ = np.arange(k, dtype=np.int64)
        self.trained_classes_ = np.unique(y.astype(np.int64))

    def _fit_offset(
        self, X: NDArray[np.float64], y: NDArray[np.float64], weight: NDArray[np.float64] | None
    ) -> None:
        self.stage_prior_: NDArray[np.float64] | None = None
        self.stage_prior_fallback_: NDArray[np.float64] | None = None
        column = self.stage_prior_column
        if column is None:
            return
        names = self.fitted_feature_names()
        if column not in names:
            raise ValueError(
                f"stage_prior_column: '{column}' is not a feature column"
                f"{did_you_mean(column, names)}; features are {names}"
            )
        if self.stage_prior_smoothing <= 0:
            # A zero in the transition row would be a -inf initial logit.
            raise ValueError(f"stage_prior_smoothing must be > 0, got {self.stage_prior_smoothing}")
        _, self.stage_prior_, self.stage_prior_fallback_ = transition_matrix(
            X[:, names.index(column)],
            y.astype(np.int64),
            self._k(),
            smoothing=self.stage_prior_smoothing,
            sample_weight=weight,
        )

    def _offset(self, X: NDArray[np.float64]) -> NDArray[np.float64] | None:
        if self.stage_prior_ is None or self.stage_prior_fallback_ is None:
            return None
        column = self.fitted_feature_names().index(str(self.stage_prior_column))
        return np.log(transition_rows(self.stage_prior_, self.stage_prior_fallback_, X[:, column]))

    def _proba_from_logits(self, logits: NDArray[np.float64], temperature: float) -> NDArray[np.float64]:
        proba = softmax(logits / temperature, axis=1)
        absent = np.ones(self._k(), dtype=bool)
        absent[self.trained_classes_] = False
        if absent.any():
            # Unseen classes get the Laplace floor; the seen ones share the rest in
            # proportion (renormalised: the offset may have given unseen columns mass).
            floor = 1.0 / (self.n_train_ + self._k())
            present = proba[:, ~absent]
            proba[:, ~absent] = present / present.sum(axis=1, keepdims=True) * (1.0 - floor * absent.sum())
            proba[:, absent] = floor
        return proba

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.calibrator_, self.calibration_report_ = fit_temperature(raw, y, self._proba_from_logits)

    def _after_load(self, meta: dict[str, Any]) -> None:
        self.trained_classes_ = np.asarray(meta["trained_classes"], dtype=np.int64)
        prior, fallback = meta.get("stage_prior"), meta.get("stage_prior_fallback")
        self.stage_prior_ = None if prior is None else np.asarray(prior, dtype=np.float64)
        self.stage_prior_fallback_ = None if fallback is None else np.asarray(fallback, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["trained_classes"] = [int(c) for c in self.trained_classes_]
        prior, fallback = self.stage_prior_, self.stage_prior_fallback_
        out["stage_prior"] = None if prior is None else prior.tolist()
        out["stage_prior_fallback"] = None if fallback is None else fallback.tolist()
        return out

    def calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._proba_from_logits(raw, float(self.calibrator_["temperature"]))

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probability of each stage, shape ``(n_samples, n_classes)``."""
        return self.calibrated(self.predict_raw(X))

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """Most probable next stage index per row."""
        proba = self.predict_proba(X)  # checks it is fitted
        return self.classes_[np.argmax(proba, axis=1)]


@estimator
class DropOffModel(ClassifierMixin, LightGBMEstimator):
    """Drop-off within the horizon (1) versus staying in the journey (0), LightGBM binary.

    Parameters
    ----------
    calibration_method : {"platt", "isotonic"}
        Platt scaling of the log-odds (keeps the ranking) or isotonic regression
        (:func:`~journey_ml.models.calibration.fit_binary`).
    btyd_stack : bool
        Before calibrating, fit weights of BG/NBD's logit P(no conversion) and log
        P(alive) (the BTYD feature columns) beside the booster's margin on the
        calibration rows, and add those terms to the margin
        (:func:`~journey_ml.models.calibration.fit_btyd_stack`). The trees are fitted on
        earlier cutoffs and are flat beyond the customer ages they saw; BG/NBD's terms
        are not. :meth:`~journey_ml.models.tasks.Task.make_model` turns it on when the
        feature spec fitted BG/NBD (``features.btyd``).
    Other parameters: see :class:`LightGBMEstimator`.

    Attributes
    ----------
    stack_ : dict or None
        The BG/NBD terms' weights in margin units (None: no stack). ``predict_raw`` and
        ``raw_margin`` include the terms; ``init_margin`` returns them (TreeSHAP explains
        the rest).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    >>> m = DropOffModel(n_estimators=20).fit(X, y)
    >>> m.predict_proba(X[:2]).shape
    (2, 2)
    """

    calibration_method: str = "platt"
    btyd_stack: bool = False

    _kind: ClassVar[str] = "drop_off"

    def _objective_params(self) -> dict[str, Any]:
        return {"objective": "binary", "metric": "binary_logloss"}

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
        if ya.ndim != 1:
            raise ValueError(f"{name} must be 1-d 0/1 drop-off labels, got shape {ya.shape}")
        bad = ~np.isin(ya, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"{name} must hold only 0/1 drop-off labels; got {ya[bad][0].item()!r}")
        return ya

    def _set_classes(self, y: NDArray[np.float64]) -> None:
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration_method must be 'platt' or 'isotonic', got {self.calibration_method!r}"
                f"{did_you_mean(self.calibration_method, CALIBRATION_METHODS)}"
            )
        self.classes_ = np.array([0, 1], dtype=np.int64)

    def _fit_offset(
        self, X: NDArray[np.float64], y: NDArray[np.float64], weight: NDArray[np.float64] | None
    ) -> None:
        # The booster is fitted from 0; the stack is learned with the calibration.
        self.stack_: dict[str, float] | None = None
        if self.btyd_stack:
            self._stack_columns()  # fail before boosting when the columns are absent

    def _stack_columns(self) -> list[int]:
        names = self.fitted_feature_names()
        for column in BTYD_STACK_COLUMNS:
            if column not in names:
                raise ValueError(
                    f"btyd_stack: '{column}' is not a feature column{did_you_mean(column, names)}"
                )
        return [names.index(column) for column in BTYD_STACK_COLUMNS]

    def _offset(self, X: NDArray[np.float64]) -> NDArray[np.float64] | None:
        stack = getattr(self, "stack_", None)
        return None if stack is None else btyd_stack_margin(stack, X[:, self._stack_columns()])

    def _calibrate_on(self, valid: tuple[NDArray[np.float64], NDArray[np.float64]] | None) -> None:
        self.stack_ = None
        if self.btyd_stack and self.calibrate and valid is not None:
            Xv, yv = valid
            self.stack_ = fit_btyd_stack(self._raw(Xv), Xv[:, self._stack_columns()], yv)
        super()._calibrate_on(valid)

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.calibrator_, self.calibration_report_ = fit_binary(raw, y, self.calibration_method)

    def _after_load(self, meta: dict[str, Any]) -> None:
        stack = meta.get("stack")
        self.stack_ = None if stack is None else {str(k): float(v) for k, v in stack.items()}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["stack"] = self.stack_
        return out

    def calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return apply_binary(self.calibrator_, raw)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated ``[P(stay), P(drop-off)]``, shape ``(n_samples, 2)``."""
        p = self.calibrated(self.predict_raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 drop-off at ``threshold`` on the calibrated probability."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(np.int64)


@estimator
class RevenueModel(RegressorMixin, LightGBMEstimator):
    """Expected value in the horizon (revenue, or conversions), LightGBM Tweedie (log link).

    Tweedie suits revenue: most customers have exactly 0, the rest a skewed positive
    amount. ``predict`` is always ``>= 0``; calibration is one scale
    (:func:`~journey_ml.models.calibration.fit_scale`).

    Parameters
    ----------
    tweedie_variance_power : float in [1, 2)
        1 is Poisson-like, 2 is Gamma-like.
    Other parameters: see :class:`LightGBMEstimator`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = np.where(X[:, 0] > 0.5, 50.0, 0.0)
    >>> m = RevenueModel(n_estimators=20).fit(X, y)
    >>> bool((m.predict(X) >= 0).all())
    True
    """

    tweedie_variance_power: float = DEFAULTS.tweedie_variance_power

    _kind: ClassVar[str] = "revenue"

    def _objective_params(self) -> dict[str, Any]:
        if not 1.0 <= self.tweedie_variance_power < 2.0:
            raise ValueError(f"tweedie_variance_power must be in [1, 2), got {self.tweedie_variance_power}")
        return {"objective": "tweedie", "tweedie_variance_power": self.tweedie_variance_power, "metric": "tweedie"}

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
        if ya.ndim != 1:
            raise ValueError(f"{name} must be 1-d future revenue, got shape {ya.shape}")
        if np.any(ya < 0):
            raise ValueError(f"{name} must be >= 0 (future revenue); got {ya[ya < 0][0].item()!r}")
        return ya

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.calibrator_, self.calibration_report_ = fit_scale(raw, y)

    def calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.exp(raw) * float(self.calibrator_["scale"])

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated expected value in the horizon, shape ``(n_samples,)``, ``>= 0``."""
        return self.calibrated(self.predict_raw(X))


MODEL_CLASSES: dict[str, type[LightGBMEstimator]] = {
    cls._kind: cls for cls in (NextStageModel, DropOffModel, RevenueModel)
}


def load_model(directory: str | Path) -> NextStageModel | DropOffModel | RevenueModel:
    """Load whichever model :meth:`~LightGBMEstimator.save` wrote into ``directory`` (dispatch on ``kind``).

    Raises
    ------
    ModelBundleError
        If ``meta.json`` is missing or names an unknown kind.
    """
    meta_path = Path(directory) / META_FILE
    if not meta_path.is_file():
        raise ModelBundleError(f"{directory}: missing {META_FILE}")
    try:
        kind = json.loads(meta_path.read_text()).get("kind")
    except json.JSONDecodeError as exc:
        raise ModelBundleError(f"{meta_path}: not valid JSON ({exc})") from exc
    if kind not in MODEL_CLASSES:
        raise ModelBundleError(
            f"{meta_path}: unknown model kind {kind!r}{did_you_mean(str(kind), MODEL_CLASSES)}; "
            f"known: {sorted(MODEL_CLASSES)}"
        )
    return MODEL_CLASSES[kind].load(directory)  # type: ignore[return-value]
