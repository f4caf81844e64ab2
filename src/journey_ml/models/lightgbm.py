"""The LightGBM machinery the journey estimators share (:mod:`journey_ml.models.estimators`).

:class:`LightGBMEstimator` follows the scikit-learn contract: ``__init__`` only stores
keyword hyperparameters (declared once, as dataclass fields, with the defaults of
:class:`~journey_ml.contract.ModelConfig`), learned attributes end in ``_``, and ``clone``
works. ``fit(X, y, *, X_valid=None, y_valid=None, sample_weight=None)``: the validation
rows drive early stopping and calibration (:mod:`journey_ml.models.calibration`);
:meth:`LightGBMEstimator.fit_calibration` refits the calibrator on other rows. A booster
trained elsewhere (``lightgbm.dask``) is adopted with ``prepare_fit`` /
``booster_params`` / ``init_score`` / ``attach_booster``.

``booster_`` is the plain booster; ``predict_raw`` is its margin at ``best_iteration_``
(plus any fixed offset), so SHAP on ``booster_`` explains the uncalibrated margin.
Persistence never pickles: ``model.txt`` (LightGBM text) and ``meta.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_consistent_length, validate_data

from journey_ml.contract import ModelConfig
from journey_ml.exceptions import ModelBundleError, NotFittedError, did_you_mean
from journey_ml.models.baselines import check_weights
from journey_ml.models.calibration import identity

__all__ = ["DEFAULTS", "META_FILE", "MODEL_FILE", "LightGBMEstimator", "estimator"]

MODEL_FILE = "model.txt"
META_FILE = "meta.json"
#: The hyperparameter defaults: :class:`~journey_ml.contract.ModelConfig`'s, the one source.
DEFAULTS = ModelConfig()
# A dataclass __init__ stores exactly the declared hyperparameters (sklearn's contract);
# eq/repr stay sklearn's (identity, BaseEstimator's repr).
estimator = dataclass(kw_only=True, eq=False, repr=False)


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """Make ``get_params()`` output JSON-safe (tuples become lists)."""
    return {
        k: [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v
        for k, v in params.items()
    }


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """Undo :func:`_params_to_json` for the tuple-valued hyperparameters."""
    out = dict(params)
    if "categorical_features" in out:
        out["categorical_features"] = tuple(out["categorical_features"])
    if "monotone_constraints" in out:
        out["monotone_constraints"] = tuple((str(f), int(d)) for f, d in out["monotone_constraints"])
    return out


@estimator
class LightGBMEstimator(BaseEstimator):
    """Shared hyperparameters, fitting, validation, prediction and persistence.

    Parameters
    ----------
    n_estimators, learning_rate, num_leaves, min_child_samples, feature_fraction, \
bagging_fraction, lambda_l2 : LightGBM hyperparameters (defaults: ``ModelConfig``).
    early_stopping_rounds : int
        Patience on the validation loss when validation rows are given.
    random_state : int
        LightGBM ``seed``; with ``deterministic=True`` the same seed and data give
        identical trees.
    n_jobs : int
        LightGBM ``num_threads``.
    categorical_features : tuple of str
        Integer-coded columns LightGBM should split as categories.
    calibrate : bool
        Fit the calibrator on the validation rows.
    monotone_constraints : tuple of (feature, direction)
        Per-feature constraint (-1, 0, +1): domain knowledge the data may be too thin or
        too confounded to show, e.g. a friction never lowers drop-off risk.

    Subclasses set ``_kind`` and implement ``_objective_params``, ``_check_y``,
    ``_fit_calibrator`` and :meth:`calibrated` (raw margin -> calibrated output).
    """

    n_estimators: int = DEFAULTS.n_estimators
    learning_rate: float = DEFAULTS.learning_rate
    num_leaves: int = DEFAULTS.num_leaves
    min_child_samples: int = DEFAULTS.min_child_samples
    feature_fraction: float = DEFAULTS.feature_fraction
    bagging_fraction: float = DEFAULTS.bagging_fraction
    lambda_l2: float = DEFAULTS.lambda_l2
    early_stopping_rounds: int = DEFAULTS.early_stopping_rounds
    random_state: int = 0
    n_jobs: int = DEFAULTS.n_jobs
    categorical_features: tuple[str, ...] = ()
    calibrate: bool = True
    monotone_constraints: tuple[tuple[str, int], ...] = ()

    _kind: ClassVar[str] = ""

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

    def calibrated(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        """The calibrated output (probabilities or expected value) of raw margins ``raw``."""
        raise NotImplementedError

    # -- validation ------------------------------------------------------------------
    def fitted_feature_names(self) -> list[str]:
        """The feature names seen in fit (``x0``, ``x1``, ... for unnamed arrays)."""
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _check_categoricals(self, X: NDArray[np.float64]) -> list[str]:
        names = self.fitted_feature_names()
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
        self.check_fitted()
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

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless the model is fitted or loaded."""
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
        """Per-feature LightGBM constraint (-1, 0, +1) from ``(feature, direction)`` pairs."""
        names = self.fitted_feature_names()
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
        Xa, ya, weight, categorical = self._prepare(X, y, sample_weight)
        names = self.fitted_feature_names()
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
        valid = self._check_valid(X_valid, y_valid)
        if valid is not None:
            Xv, yv = valid
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
        self._calibrate_on(valid)
        return self

    def _check_valid(
        self, X_valid: ArrayLike | None, y_valid: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """Validated validation rows, or None when neither is given."""
        if (X_valid is None) != (y_valid is None):
            raise ValueError("X_valid and y_valid must be given together (got only one)")
        if X_valid is None or y_valid is None:
            return None
        Xv = self._check_X_predict_unfitted(X_valid)
        yv = self._check_y(y_valid, "y_valid")
        check_consistent_length(Xv, yv)
        return Xv, yv

    def _calibrate_on(self, valid: tuple[NDArray[np.float64], NDArray[np.float64]] | None) -> None:
        self.calibrator_: dict[str, Any] = identity(self._kind)
        self.calibration_report_: dict[str, float] = {}
        if self.calibrate and valid is not None:
            self._fit_calibrator(self._raw(valid[0]), valid[1])

    def fit_calibration(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Refit only the calibrator, on ``(X, y)``: rows drawn like those scoring sees.

        E.g. the weekly validation snapshots when ``fit`` early-stopped on weekly and
        event-anchored rows together. A no-op with ``calibrate=False``.
        """
        self.check_fitted()
        self._calibrate_on(self._check_valid(X, y))
        return self

    def _prepare(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None, list[str]]:
        """Validate, learn columns/classes and the fixed offset: everything before boosting."""
        Xa = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite="allow-nan")
        ya = self._check_y(y, "y")
        check_consistent_length(Xa, ya)
        weight = check_weights(sample_weight, Xa.shape[0]) if sample_weight is not None else None
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
        ``stage_prior_column``; None for every other model (a drop-off model's BG/NBD
        stack is learned after boosting, so boosting starts from 0).
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
        if booster.num_feature() != self.n_features_in_:
            raise ValueError(
                f"booster has {booster.num_feature()} features, the model expects {self.n_features_in_}"
            )
        valid = self._check_valid(X_valid, y_valid)
        self.booster_ = booster
        self.best_iteration_ = int(best_iteration or booster.current_iteration())
        self.n_train_ = int(n_train)
        self._calibrate_on(valid)
        return self

    def _check_X_predict_unfitted(self, X: ArrayLike) -> NDArray[np.float64]:
        # Same column checks as at predict time, before booster_ exists.
        return validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")

    # -- prediction ------------------------------------------------------------------
    def _raw(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.raw_margin(X)

    def raw_margin(self, X: NDArray[np.float64], *, num_threads: int = 0) -> NDArray[np.float64]:
        """:meth:`predict_raw` without the input checks, for a float64 matrix already in the
        fitted column order (the online scorer builds exactly that); ``num_threads=1``
        avoids OpenMP start-up for a few rows (0: LightGBM's default)."""
        params = {"num_threads": num_threads} if num_threads else {}
        raw = np.asarray(
            self.booster_.predict(X, raw_score=True, num_iteration=self.best_iteration_, **params),
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
        ``stage_prior_column`` set and a drop-off model whose BG/NBD stack was fitted.
        """
        return self._raw(self._check_X_predict(X))

    def init_margin(self, X: ArrayLike) -> NDArray[np.float64]:
        """The fixed margin the booster was trained on top of (zeros when there is none).

        TreeSHAP on ``booster_`` explains ``predict_raw(X) - init_margin(X)``; add this
        margin back before applying the link and the calibrator.
        """
        Xa = self._check_X_predict(X)
        offset = self.fixed_margin(Xa)
        if offset is not None:
            return offset
        k = self.booster_.num_model_per_iteration()
        return np.zeros((len(Xa), k) if k > 1 else len(Xa))

    def fixed_margin(self, X: NDArray[np.float64]) -> NDArray[np.float64] | None:
        """:meth:`init_margin` without the input checks (a float64 matrix in the fitted
        column order, as :meth:`raw_margin` takes), or None when the model has no margin."""
        return self._offset(X)

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
        self.check_fitted()
        out: dict[str, Any] = {
            "kind": self._kind,
            "params": _params_to_json(self.get_params()),
            "feature_names": self.fitted_feature_names(),
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
        self.check_fitted()
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


