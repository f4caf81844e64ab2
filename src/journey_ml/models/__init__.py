"""LightGBM estimators for the three journey targets, with validation-period calibration.

* :class:`NextStageModel` — multiclass over the journey map's stage indices ``0..K-1``;
  calibrated by temperature scaling of the softmax logits.
* :class:`DropOffModel` — binary drop-off risk; calibrated by Platt scaling of the
  log-odds margin (default) or isotonic regression.
* :class:`RevenueModel` — expected revenue in the horizon with a Tweedie objective
  (log link); calibrated by one multiplicative scale so the validation mean matches.

All three follow the scikit-learn estimator contract (``get_params``/``set_params``/
``clone`` work, learned attributes end in ``_``) and share one ``fit`` signature::

    fit(X, y, *, X_valid=None, y_valid=None, sample_weight=None)

When ``X_valid``/``y_valid`` are given they drive early stopping *and* calibration (the
validation period is the one held out by cutoff time, so calibration sees the
distribution shift that scoring will see). Without them the booster trains for
``n_estimators`` rounds and calibration is the identity.

Raw margins and calibration
---------------------------
``booster_`` is the plain LightGBM booster; ``predict_raw`` returns its margin at
``best_iteration_``: softmax logits (next stage), log-odds (drop-off) or log expected
revenue (revenue). Calibration is applied *after* the raw margin, so SHAP values computed
on ``booster_`` explain the uncalibrated margin; map them through the link and then the
calibrator (``calibrator_``) when a probability-scale attribution is needed.

Persistence never pickles: ``save(dir)`` writes ``model.txt`` (LightGBM text format) and
``meta.json`` (hyperparameters, calibrator numbers, feature names, classes);
``load(dir)`` rebuilds from those two files only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    validate_data,
)

from journey_ml.models.baselines import transition_matrix, transition_rows
from journey_ml.evaluation.metrics import expected_calibration_error
from journey_ml.exceptions import ModelBundleError, NotFittedError, did_you_mean

__all__ = ["DropOffModel", "NextStageModel", "RevenueModel", "load_model"]

MODEL_FILE = "model.txt"
META_FILE = "meta.json"
# Probabilities are clipped away from 0/1 so log loss and logits stay finite.
_EPS = 1e-7


def _check_weight(sample_weight: ArrayLike, n_rows: int) -> NDArray[np.float64]:
    """Validate per-row weights: 1-d, one per row, finite and non-negative."""
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.ndim != 1 or w.shape[0] != n_rows:
        raise ValueError(f"sample_weight must have shape ({n_rows},), got {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be >= 0; got {w[w < 0][0].item()!r}")
    return w


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """Make ``get_params()`` output JSON-safe (tuples become lists)."""
    return {
        k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
        for k, v in params.items()
    }


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`_params_to_json` for the tuple-valued hyperparameter."""
    out = dict(params)
    if "categorical_features" in out:
        out["categorical_features"] = tuple(out["categorical_features"])
    if "monotone_constraints" in out:
        out["monotone_constraints"] = tuple((str(f), int(d)) for f, d in out["monotone_constraints"])
    return out


class _LightGBMEstimator(BaseEstimator):
    """Shared fitting, validation, prediction and persistence for the three models.

    Subclasses set ``_kind`` and implement ``_objective_params``, ``_check_y``,
    ``_fit_calibrator`` and ``_calibrated`` (raw margin -> calibrated output).
    """

    _kind: ClassVar[str] = ""

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        feature_fraction: float = 1.0,
        bagging_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        early_stopping_rounds: int = 30,
        random_state: int = 0,
        n_jobs: int = 2,
        categorical_features: tuple[str, ...] = (),
        calibrate: bool = True,
        monotone_constraints: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.categorical_features = categorical_features
        self.calibrate = calibrate
        self.monotone_constraints = monotone_constraints

    # -- subclass hooks --------------------------------------------------------------
    def _objective_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        raise NotImplementedError

    def _set_classes(self, y: NDArray[np.float64]) -> None:
        """Record class information learned from the training labels (classifiers only)."""

    def _fit_offset(
        self, X: NDArray[np.float64], y: NDArray[np.float64], weight: NDArray[np.float64] | None
    ) -> None:
        """Learn a fixed per-row margin the booster starts from (none by default)."""

    def _offset(self, X: NDArray[np.float64]) -> NDArray[np.float64] | None:
        """The fixed margin added to the booster's raw output, or None."""
        return None

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        raise NotImplementedError

    def _identity_calibrator(self) -> dict[str, Any]:
        raise NotImplementedError

    def _calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    # -- validation ------------------------------------------------------------------
    def _feature_names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _check_categoricals(self, X: NDArray[np.float64]) -> list[str]:
        names = self._feature_names()
        for col in self.categorical_features:
            if col not in names:
                raise ValueError(
                    f"categorical_features: '{col}' is not a feature column"
                    f"{did_you_mean(col, names)}; features are {names}"
                )
            values = X[:, names.index(col)]
            values = values[~np.isnan(values)]
            if values.size and (np.any(values < 0) or np.any(values != np.round(values))):
                raise ValueError(
                    f"categorical feature '{col}' must hold non-negative integer codes; "
                    f"got e.g. {values[(values < 0) | (values != np.round(values))][0].item()!r}"
                )
        return list(self.categorical_features)

    def _check_X_predict(self, X: ArrayLike) -> NDArray[np.float64]:
        self._check_fitted()
        # Fast path for the common case (scoring/serving): a DataFrame whose columns are
        # exactly the training features in order. sklearn's full validation costs tens of
        # milliseconds per call, which dominated single-customer API latency.
        names = getattr(self, "feature_names_in_", None)
        if (
            isinstance(X, pd.DataFrame)
            and names is not None
            and X.shape[1] == len(names)
            and bool(np.all(X.columns.to_numpy() == names))
        ):
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        return validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X, y) or load(dir) first"
            )

    # -- fitting ---------------------------------------------------------------------
    def _lgb_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            # Bagging is only active with a non-zero frequency.
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "lambda_l2": self.lambda_l2,
            "seed": self.random_state,
            "num_threads": self.n_jobs,
            # deterministic needs a fixed histogram layout to give bit-identical trees.
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.monotone_constraints:
            params["monotone_constraints"] = self._monotone_vector()
        params.update(self._objective_params())
        return params

    def _monotone_vector(self) -> list[int]:
        """Per-feature LightGBM constraint (-1, 0, +1) from ``(feature, direction)`` pairs.

        Domain knowledge the data may be too thin or too confounded to show, e.g. a
        friction never lowers drop-off risk (busy browsers meet more page timeouts and
        also buy more, which an unconstrained model happily learns).
        """
        names = self._feature_names()
        vector = [0] * len(names)
        for feature, direction in self.monotone_constraints:
            if feature not in names:
                raise ValueError(
                    f"monotone_constraints: '{feature}' is not a feature column{did_you_mean(feature, names)}"
                )
            if direction not in (-1, 0, 1):
                raise ValueError(f"monotone_constraints: direction for '{feature}' must be -1, 0 or 1, got {direction!r}")
            vector[names.index(feature)] = int(direction)
        return vector

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        X_valid: ArrayLike | None = None,
        y_valid: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
        callbacks: Sequence[Callable[..., Any]] = (),
    ) -> Self:
        """Train the booster, early-stop and calibrate on the validation set when given.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Numeric features; NaN allowed (LightGBM routes missing values). Categorical
            features must be non-negative integer codes.
        y : array-like of shape (n_samples,)
            Training labels.
        X_valid, y_valid : array-like, optional
            Validation period (later cutoffs than training). Used for early stopping and
            for calibration; give both or neither.
        sample_weight : array-like of shape (n_samples,), optional
            Per-row training weights.
        callbacks : sequence of callables, optional
            Extra LightGBM callbacks (e.g. Optuna's pruning callback, which reads the
            validation set named ``"valid"``).

        Returns
        -------
        self
        """
        if (X_valid is None) != (y_valid is None):
            raise ValueError("X_valid and y_valid must be given together (got only one)")
        Xa, ya, weight, categorical = self._prepare(X, y, sample_weight)
        names = self._feature_names()
        train_set = lgb.Dataset(
            Xa,
            label=ya,
            weight=weight,
            init_score=self._offset(Xa),
            feature_name=names,
            categorical_feature=categorical,
            free_raw_data=True,
        )
        valid_sets: list[lgb.Dataset] = []
        callbacks = list(callbacks)
        Xv: NDArray[np.float64] | None = None
        yv: NDArray[np.float64] | None = None
        if X_valid is not None and y_valid is not None:
            Xv = self._check_X_predict_unfitted(X_valid)
            yv = self._check_y(y_valid, "y_valid")
            check_consistent_length(Xv, yv)
            valid_sets.append(
                lgb.Dataset(
                    Xv,
                    label=yv,
                    init_score=self._offset(Xv),
                    feature_name=names,
                    categorical_feature=categorical,
                    reference=train_set,
                )
            )
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        booster = lgb.train(
            self._lgb_params(),
            train_set,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            valid_names=["valid"] if valid_sets else None,
            callbacks=callbacks,
        )
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.n_train_ = int(Xa.shape[0])
        self.calibrator_ = self._identity_calibrator()
        self.calibration_report_: dict[str, float] = {}
        if self.calibrate and Xv is not None and yv is not None:
            self._fit_calibrator(self._raw(Xv), yv)
        return self

    def _prepare(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None, list[str]]:
        """Validate, learn columns/classes and the fixed offset: everything before boosting."""
        Xa = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")
        ya = self._check_y(y, "y")
        check_consistent_length(Xa, ya)
        weight = _check_weight(sample_weight, Xa.shape[0]) if sample_weight is not None else None
        categorical = self._check_categoricals(Xa)
        self._set_classes(ya)
        self._fit_offset(Xa, ya, weight)
        return Xa, ya, weight, categorical

    # -- external boosting (e.g. lightgbm.dask) --------------------------------------
    def prepare_fit(self, X: ArrayLike, y: ArrayLike, *, sample_weight: ArrayLike | None = None) -> Self:
        """Learn what :meth:`fit` learns before boosting, for a booster trained elsewhere.

        Sets the feature names, the classes and (next-stage model with
        ``stage_prior_column``) the Markov offset. ``X``/``y`` may be a weighted summary
        of the training rows, e.g. one row per distinct ``(current_stage, next_stage)``
        pair with its count as ``sample_weight``: the offset only depends on those counts.
        Follow with :meth:`booster_params`, :meth:`init_score` and :meth:`attach_booster`.

        Returns
        -------
        self
        """
        self._prepare(X, y, sample_weight)
        return self

    def booster_params(self) -> dict[str, Any]:
        """The LightGBM parameters :meth:`fit` trains with (objective included).

        Call after :meth:`prepare_fit` (the multiclass objective needs the classes).
        """
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{type(self).__name__}: call prepare_fit(X, y) before booster_params()")
        return self._lgb_params()

    def init_score(self, X: ArrayLike) -> NDArray[np.float64] | None:
        """Per-row initial margin an external booster must start from (None: none).

        ``(n, K)`` log Markov transition rows for a next-stage model with
        ``stage_prior_column``; None for every other model.
        """
        return self._offset(self._check_X_predict_unfitted(X))

    def attach_booster(
        self,
        booster: lgb.Booster,
        *,
        n_train: int,
        best_iteration: int | None = None,
        X_valid: ArrayLike | None = None,
        y_valid: ArrayLike | None = None,
    ) -> Self:
        """Adopt a booster trained elsewhere, then calibrate on the validation set as :meth:`fit` does.

        Parameters
        ----------
        booster : lightgbm.Booster
            Trained with :meth:`booster_params` and :meth:`init_score` on the same columns.
        n_train : int
            Number of training rows it saw.
        best_iteration : int, optional
            Iteration to predict with; default: all of the booster's iterations.
        X_valid, y_valid : array-like, optional
            Validation period for calibration (give both or neither).

        Returns
        -------
        self
        """
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"{type(self).__name__}: call prepare_fit(X, y) before attach_booster()")
        if (X_valid is None) != (y_valid is None):
            raise ValueError("X_valid and y_valid must be given together (got only one)")
        if booster.num_feature() != self.n_features_in_:
            raise ValueError(
                f"booster has {booster.num_feature()} features, the model expects {self.n_features_in_}"
            )
        self.booster_ = booster
        self.best_iteration_ = int(best_iteration or booster.current_iteration())
        self.n_train_ = int(n_train)
        self.calibrator_ = self._identity_calibrator()
        self.calibration_report_ = {}
        if self.calibrate and X_valid is not None and y_valid is not None:
            Xv = self._check_X_predict_unfitted(X_valid)
            yv = self._check_y(y_valid, "y_valid")
            check_consistent_length(Xv, yv)
            self._fit_calibrator(self._raw(Xv), yv)
        return self

    def _check_X_predict_unfitted(self, X: ArrayLike) -> NDArray[np.float64]:
        # Same column checks as at predict time, before booster_ exists.
        return validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")

    # -- prediction ------------------------------------------------------------------
    def _raw(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        raw = np.asarray(
            self.booster_.predict(X, raw_score=True, num_iteration=self.best_iteration_),
            dtype=np.float64,
        )
        offset = self._offset(X)
        return raw if offset is None else raw + offset

    def predict_raw(self, X: ArrayLike) -> NDArray[np.float64]:
        """Uncalibrated margin at ``best_iteration_``: ``booster_`` output plus any offset.

        Softmax logits ``(n, K)`` for the next-stage model, log-odds ``(n,)`` for
        drop-off and log expected revenue ``(n,)`` for revenue. Equals
        ``booster_.predict(X, raw_score=True, num_iteration=best_iteration_) +
        init_margin(X)``; the offset is 0 except for a next-stage model with
        ``stage_prior_column`` set.
        """
        return self._raw(self._check_X_predict(X))

    def init_margin(self, X: ArrayLike) -> NDArray[np.float64]:
        """The fixed margin the booster was trained on top of (zeros when there is none).

        TreeSHAP on ``booster_`` explains ``predict_raw(X) - init_margin(X)``; add this
        margin back before applying the link and the calibrator.
        """
        Xa = self._check_X_predict(X)
        offset = self._offset(Xa)
        return np.zeros_like(self._raw(Xa)) if offset is None else offset

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: hyperparameters and everything learned but trees.

        Returns
        -------
        dict
            Keys ``kind``, ``params``, ``feature_names``, ``has_feature_names``,
            ``n_features_in``, ``best_iteration``, ``n_train``, ``calibrator``,
            ``calibration_report`` and ``classes`` (classifiers) .
        """
        self._check_fitted()
        out: dict[str, Any] = {
            "kind": self._kind,
            "params": _params_to_json(self.get_params()),
            "feature_names": self._feature_names(),
            "has_feature_names": hasattr(self, "feature_names_in_"),
            "n_features_in": int(self.n_features_in_),
            "best_iteration": int(self.best_iteration_),
            "n_train": int(self.n_train_),
            "calibrator": self.calibrator_,
            "calibration_report": self.calibration_report_,
        }
        if hasattr(self, "classes_"):
            out["classes"] = [int(c) for c in self.classes_]
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``model.txt`` (LightGBM text) and ``meta.json`` into ``directory``.

        Returns
        -------
        Path
            The directory written to (created if missing).
        """
        self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / MODEL_FILE), num_iteration=self.best_iteration_)
        (path / META_FILE).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Rebuild a fitted model from :meth:`save` output (text + JSON, never pickle).

        Raises
        ------
        ModelBundleError
            If a file is missing, unreadable, or was saved by a different model class.
        """
        path = Path(directory)
        for name in (MODEL_FILE, META_FILE):
            if not (path / name).is_file():
                raise ModelBundleError(
                    f"{path}: missing {name} (expected {MODEL_FILE} + {META_FILE})"
                )
        try:
            meta = json.loads((path / META_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise ModelBundleError(f"{path / META_FILE}: not valid JSON ({exc})") from exc
        if meta.get("kind") != cls._kind:
            raise ModelBundleError(
                f"{path}: meta.json kind is {meta.get('kind')!r}, expected {cls._kind!r}"
            )
        model = cls(**_params_from_json(meta["params"]))
        model.booster_ = lgb.Booster(model_file=str(path / MODEL_FILE))
        model.n_features_in_ = int(meta["n_features_in"])
        if meta["has_feature_names"]:
            model.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
        model.best_iteration_ = int(meta["best_iteration"])
        model.n_train_ = int(meta["n_train"])
        model.calibrator_ = meta["calibrator"]
        model.calibration_report_ = meta["calibration_report"]
        if "classes" in meta:
            model.classes_ = np.asarray(meta["classes"], dtype=np.int64)
        model._after_load(meta)
        return model

    def _after_load(self, meta: dict[str, Any]) -> None:
        """Restore subclass-specific learned state from ``meta.json``."""


def _log_loss_multi(logp: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    return float(-np.mean(logp[np.arange(y.size), y]))


def _binary_log_loss(p: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


class NextStageModel(ClassifierMixin, _LightGBMEstimator):
    """Next journey stage (furthest stage reached by cutoff + horizon), LightGBM multiclass.

    Classes are the stage indices ``0..n_classes-1`` of the journey map; ``predict_proba``
    always has ``n_classes`` columns. Stages absent from training get the additive
    smoothing floor ``1 / (n_train + n_classes)`` and the remaining mass is rescaled, so
    rows still sum to 1. Calibration is temperature scaling: one scalar ``T`` dividing
    the logits, fitted by minimising validation log loss (keeps the ranking of classes).

    With ``stage_prior_column`` set, the booster is boosted *from* the first-order Markov
    chain: each row's initial logits are the log of its current stage's smoothed
    transition row (learned on the training rows), and the trees learn only the
    correction. Next stage is dominated by "stays where it is", which plain boosting from
    the class average needs many trees and many rows per rare stage to rediscover; the
    offset makes the model start at the Markov baseline instead.

    Parameters
    ----------
    n_classes : int, optional
        Number of stages ``K`` (``len(journey_map.stages)``). ``None`` infers
        ``max(y) + 1`` from the labels seen in ``fit`` — pass it explicitly in pipelines.
    n_estimators, learning_rate, num_leaves, min_child_samples, feature_fraction, \
bagging_fraction, lambda_l2 : LightGBM hyperparameters.
    early_stopping_rounds : int
        Patience on the validation log loss when a validation set is given.
    random_state : int
        LightGBM ``seed``; with ``deterministic=True`` the same seed and data give
        identical trees.
    n_jobs : int
        LightGBM ``num_threads``.
    categorical_features : tuple of str
        Integer-coded columns LightGBM should split as categories.
    calibrate : bool
        Fit temperature scaling on the validation set.
    stage_prior_column : str, optional
        Feature column with the integer current stage; enables the Markov offset
        (e.g. ``"current_stage"``). ``None`` boosts from the class average.
    stage_prior_smoothing : float
        Additive pseudo-count of the offset's transition counts.

    Attributes
    ----------
    booster_ : lightgbm.Booster
    classes_ : ndarray of int, shape (n_classes,)
    stage_prior_ : ndarray (K, K) or None — the offset's transition matrix.
    stage_prior_fallback_ : ndarray (K,) or None — row used for unknown current stages.
    n_features_in_, feature_names_in_ : as in scikit-learn.
    best_iteration_ : int
    calibrator_ : dict ``{"method": "temperature", "temperature": T}``
    calibration_report_ : dict of validation log loss / ECE (top-class) before and after.
    trained_classes_ : ndarray of int — the classes present in the training labels.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    >>> m = NextStageModel(n_classes=4, n_estimators=20).fit(X, y)
    >>> m.predict_proba(X[:2]).shape
    (2, 4)
    """

    _kind: ClassVar[str] = "next_stage"

    def __init__(
        self,
        *,
        n_classes: int | None = None,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        feature_fraction: float = 1.0,
        bagging_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        early_stopping_rounds: int = 30,
        random_state: int = 0,
        n_jobs: int = 2,
        categorical_features: tuple[str, ...] = (),
        calibrate: bool = True,
        stage_prior_column: str | None = None,
        stage_prior_smoothing: float = 1.0,
    ) -> None:
        self.n_classes = n_classes
        self.stage_prior_column = stage_prior_column
        self.stage_prior_smoothing = stage_prior_smoothing
        super().__init__(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            feature_fraction=feature_fraction,
            bagging_fraction=bagging_fraction,
            lambda_l2=lambda_l2,
            early_stopping_rounds=early_stopping_rounds,
            random_state=random_state,
            n_jobs=n_jobs,
            categorical_features=categorical_features,
            calibrate=calibrate,
        )

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

    def _identity_calibrator(self) -> dict[str, Any]:
        return {"method": "temperature", "temperature": 1.0}

    def _fit_offset(
        self, X: NDArray[np.float64], y: NDArray[np.float64], weight: NDArray[np.float64] | None
    ) -> None:
        self.stage_prior_: NDArray[np.float64] | None = None
        self.stage_prior_fallback_: NDArray[np.float64] | None = None
        column = self.stage_prior_column
        if column is None:
            return
        names = self._feature_names()
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
        column = self._feature_names().index(str(self.stage_prior_column))
        return np.log(transition_rows(self.stage_prior_, self.stage_prior_fallback_, X[:, column]))

    def _floor(self) -> float:
        # Laplace (add-one) estimate of a class never seen among n_train labels.
        return 1.0 / (self.n_train_ + self._k())

    def _proba_from_logits(
        self, logits: NDArray[np.float64], temperature: float
    ) -> NDArray[np.float64]:
        proba = softmax(logits / temperature, axis=1)
        absent = np.ones(self._k(), dtype=bool)
        absent[self.trained_classes_] = False
        if absent.any():
            # Classes never seen in training get the Laplace floor; the seen ones share the
            # rest in proportion (the softmax also gave the unseen columns some mass, e.g.
            # through the Markov offset, so renormalise rather than scale).
            floor = self._floor()
            present = proba[:, ~absent]
            proba[:, ~absent] = present / present.sum(axis=1, keepdims=True) * (1.0 - floor * absent.sum())
            proba[:, absent] = floor
        return proba

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        yi = y.astype(np.int64)

        def loss(log_t: float) -> float:
            p = np.clip(self._proba_from_logits(raw, math.exp(log_t)), _EPS, 1.0)
            return _log_loss_multi(np.log(p), yi)

        # Bounded 1-d search on log T: deterministic and cheap; T in [0.05, 20].
        res = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
        before = self._proba_from_logits(raw, 1.0)
        temperature = float(math.exp(res.x)) if loss(res.x) < loss(0.0) else 1.0
        after = self._proba_from_logits(raw, temperature)
        self.calibrator_ = {"method": "temperature", "temperature": temperature}
        self.calibration_report_ = {
            "n_valid": float(y.size),
            "log_loss_before": loss(0.0),
            "log_loss_after": loss(math.log(temperature)),
            "ece_before": _top_class_ece(before, yi),
            "ece_after": _top_class_ece(after, yi),
        }

    def _after_load(self, meta: dict[str, Any]) -> None:
        self.trained_classes_ = np.asarray(meta["trained_classes"], dtype=np.int64)
        prior, fallback = meta.get("stage_prior"), meta.get("stage_prior_fallback")
        self.stage_prior_ = None if prior is None else np.asarray(prior, dtype=np.float64)
        self.stage_prior_fallback_ = (
            None if fallback is None else np.asarray(fallback, dtype=np.float64)
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["trained_classes"] = [int(c) for c in self.trained_classes_]
        prior, fallback = self.stage_prior_, self.stage_prior_fallback_
        out["stage_prior"] = None if prior is None else prior.tolist()
        out["stage_prior_fallback"] = None if fallback is None else fallback.tolist()
        return out

    def _calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._proba_from_logits(raw, float(self.calibrator_["temperature"]))

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probability of each stage, shape ``(n_samples, n_classes)``."""
        return self._calibrated(self.predict_raw(X))

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """Most probable next stage index per row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _top_class_ece(proba: NDArray[np.float64], y: NDArray[np.int64]) -> float:
    """Confidence ECE: top-class probability against whether the top class was right."""
    top = np.argmax(proba, axis=1)
    return expected_calibration_error((top == y).astype(np.float64), proba.max(axis=1))


class DropOffModel(ClassifierMixin, _LightGBMEstimator):
    """Drop-off within the horizon (1) versus staying in the journey (0), LightGBM binary.

    Calibration on the validation set is Platt scaling of the log-odds margin
    (``p = sigmoid(a * margin + b)``, keeps the ranking so ROC-AUC is unchanged) or
    isotonic regression (stored as its two threshold arrays, applied by linear
    interpolation and clipped to ``[1e-7, 1 - 1e-7]``).

    Parameters
    ----------
    calibration_method : {"platt", "isotonic"}
        How to calibrate when ``calibrate`` and a validation set are given.
    Other parameters are as for :class:`NextStageModel`.

    Attributes
    ----------
    classes_ : ndarray ``[0, 1]``
    calibrator_ : dict — ``{"method": "platt", "a": a, "b": b}`` or
        ``{"method": "isotonic", "x": [...], "y": [...]}`` (identity Platt when not fitted).
    calibration_report_ : dict of validation log loss / Brier / ECE before and after.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    >>> m = DropOffModel(n_estimators=20).fit(X, y)
    >>> m.predict_proba(X[:2]).shape
    (2, 2)
    """

    _kind: ClassVar[str] = "drop_off"

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        feature_fraction: float = 1.0,
        bagging_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        early_stopping_rounds: int = 30,
        random_state: int = 0,
        n_jobs: int = 2,
        categorical_features: tuple[str, ...] = (),
        calibrate: bool = True,
        calibration_method: str = "platt",
        monotone_constraints: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.calibration_method = calibration_method
        super().__init__(
            monotone_constraints=monotone_constraints,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            feature_fraction=feature_fraction,
            bagging_fraction=bagging_fraction,
            lambda_l2=lambda_l2,
            early_stopping_rounds=early_stopping_rounds,
            random_state=random_state,
            n_jobs=n_jobs,
            categorical_features=categorical_features,
            calibrate=calibrate,
        )

    def _objective_params(self) -> dict[str, Any]:
        return {"objective": "binary", "metric": "binary_logloss"}

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
        if ya.ndim != 1:
            raise ValueError(f"{name} must be 1-d 0/1 drop-off labels, got shape {ya.shape}")
        bad = ~np.isin(ya, (0.0, 1.0))
        if bad.any():
            raise ValueError(
                f"{name} must hold only 0/1 drop-off labels; got {ya[bad][0].item()!r}"
            )
        return ya

    def _set_classes(self, y: NDArray[np.float64]) -> None:
        if self.calibration_method not in ("platt", "isotonic"):
            raise ValueError(
                f"calibration_method must be 'platt' or 'isotonic', got {self.calibration_method!r}"
                f"{did_you_mean(self.calibration_method, ['platt', 'isotonic'])}"
            )
        self.classes_ = np.array([0, 1], dtype=np.int64)

    def _identity_calibrator(self) -> dict[str, Any]:
        return {"method": "platt", "a": 1.0, "b": 0.0}

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        before = np.clip(expit(raw), _EPS, 1 - _EPS)
        if np.unique(y).size < 2:
            # One class in validation: nothing to calibrate against, keep the identity.
            self.calibrator_ = self._identity_calibrator()
        elif self.calibration_method == "platt":
            self.calibrator_ = _fit_platt(raw, y)
        else:
            iso = IsotonicRegression(out_of_bounds="clip", y_min=_EPS, y_max=1 - _EPS)
            iso.fit(raw, y)
            self.calibrator_ = {
                "method": "isotonic",
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        after = self._calibrated(raw)
        self.calibration_report_ = {
            "n_valid": float(y.size),
            "log_loss_before": _binary_log_loss(before, y),
            "log_loss_after": _binary_log_loss(after, y),
            "brier_before": float(np.mean((before - y) ** 2)),
            "brier_after": float(np.mean((after - y) ** 2)),
            "ece_before": expected_calibration_error(y, before),
            "ece_after": expected_calibration_error(y, after),
        }

    def _calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        cal = self.calibrator_
        if cal["method"] == "platt":
            p = expit(float(cal["a"]) * raw + float(cal["b"]))
        else:
            p = np.interp(raw, np.asarray(cal["x"]), np.asarray(cal["y"]))
        return np.clip(p, _EPS, 1 - _EPS)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated ``[P(stay), P(drop-off)]``, shape ``(n_samples, 2)``."""
        p = self._calibrated(self.predict_raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 drop-off at ``threshold`` on the calibrated probability."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(np.int64)


def _fit_platt(raw: NDArray[np.float64], y: NDArray[np.float64]) -> dict[str, Any]:
    """Two-parameter logistic fit of labels on the margin (unregularised, deterministic)."""

    def nll(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = theta[0] * raw + theta[1]
        # log(1 + e^z) - y z, written stably; gradient is (sigmoid(z) - y) * [raw, 1].
        loss = np.logaddexp(0.0, z) - y * z
        g = expit(z) - y
        return float(loss.mean()), np.array([np.mean(g * raw), np.mean(g)])

    res = minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in res.x)
    if not (np.isfinite(a) and np.isfinite(b)):
        a, b = 1.0, 0.0
    return {"method": "platt", "a": a, "b": b}


class RevenueModel(RegressorMixin, _LightGBMEstimator):
    """Expected revenue of conversion events in the horizon, LightGBM Tweedie (log link).

    Tweedie suits revenue: most customers have exactly 0, the rest a skewed positive
    amount. Calibration multiplies predictions by one scale ``sum(y_valid) /
    sum(pred_valid)`` so the validation total is matched (the log link makes this a
    shift of the margin, so rankings are unchanged). ``predict`` is always ``>= 0``.

    Parameters
    ----------
    tweedie_variance_power : float in (1, 2)
        1 is Poisson-like, 2 is Gamma-like; 1.3 suits zero-heavy order values.
    Other parameters are as for :class:`NextStageModel`.

    Attributes
    ----------
    calibrator_ : dict ``{"method": "scale", "scale": s}``
    calibration_report_ : dict of validation MAE and mean predicted/actual before and after.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = np.where(X[:, 0] > 0.5, 50.0, 0.0)
    >>> m = RevenueModel(n_estimators=20).fit(X, y)
    >>> bool((m.predict(X) >= 0).all())
    True
    """

    _kind: ClassVar[str] = "revenue"

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        feature_fraction: float = 1.0,
        bagging_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        early_stopping_rounds: int = 30,
        random_state: int = 0,
        n_jobs: int = 2,
        categorical_features: tuple[str, ...] = (),
        calibrate: bool = True,
        tweedie_variance_power: float = 1.3,
        monotone_constraints: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.tweedie_variance_power = tweedie_variance_power
        super().__init__(
            monotone_constraints=monotone_constraints,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            feature_fraction=feature_fraction,
            bagging_fraction=bagging_fraction,
            lambda_l2=lambda_l2,
            early_stopping_rounds=early_stopping_rounds,
            random_state=random_state,
            n_jobs=n_jobs,
            categorical_features=categorical_features,
            calibrate=calibrate,
        )

    def _objective_params(self) -> dict[str, Any]:
        if not 1.0 <= self.tweedie_variance_power < 2.0:
            raise ValueError(
                f"tweedie_variance_power must be in [1, 2), got {self.tweedie_variance_power}"
            )
        return {
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "metric": "tweedie",
        }

    def _check_y(self, y: ArrayLike, name: str) -> NDArray[np.float64]:
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
        if ya.ndim != 1:
            raise ValueError(f"{name} must be 1-d future revenue, got shape {ya.shape}")
        if np.any(ya < 0):
            raise ValueError(f"{name} must be >= 0 (future revenue); got {ya[ya < 0][0].item()!r}")
        return ya

    def _identity_calibrator(self) -> dict[str, Any]:
        return {"method": "scale", "scale": 1.0}

    def _fit_calibrator(self, raw: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        before = np.exp(raw)
        total = float(before.sum())
        scale = float(y.sum()) / total if total > 0 and y.sum() > 0 else 1.0
        self.calibrator_ = {"method": "scale", "scale": scale}
        after = self._calibrated(raw)
        mean_true = float(y.mean()) if y.size else float("nan")
        self.calibration_report_ = {
            "n_valid": float(y.size),
            "mae_before": float(np.mean(np.abs(before - y))),
            "mae_after": float(np.mean(np.abs(after - y))),
            "mean_ratio_before": float(before.mean()) / mean_true if mean_true else float("nan"),
            "mean_ratio_after": float(after.mean()) / mean_true if mean_true else float("nan"),
        }

    def _calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.exp(raw) * float(self.calibrator_["scale"])

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated expected revenue in the horizon, shape ``(n_samples,)``, ``>= 0``."""
        return self._calibrated(self.predict_raw(X))


_MODEL_CLASSES: dict[str, type[_LightGBMEstimator]] = {
    cls._kind: cls for cls in (NextStageModel, DropOffModel, RevenueModel)
}


def load_model(directory: str | Path) -> NextStageModel | DropOffModel | RevenueModel:
    """Load whichever model :meth:`save` wrote into ``directory`` (dispatch on ``kind``).

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
    if kind not in _MODEL_CLASSES:
        raise ModelBundleError(
            f"{meta_path}: unknown model kind {kind!r}{did_you_mean(str(kind), _MODEL_CLASSES)}; "
            f"known: {sorted(_MODEL_CLASSES)}"
        )
    return _MODEL_CLASSES[kind].load(directory)  # type: ignore[return-value]
