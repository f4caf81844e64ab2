"""LightGBM models, plus the one contract test every model and baseline must pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor

from journey_ml.contract import ModelConfig, TrainConfig
from journey_ml.evaluation.metrics import drop_off_metrics, next_stage_metrics, revenue_metrics
from journey_ml.exceptions import ModelBundleError, NotFittedError
from journey_ml.labels.shape import PARTS, JourneyShape, Part
from journey_ml.models import DropOffModel, NextStageModel, RevenueModel, load_model
from journey_ml.models.baselines import (
    ClassPriorBaseline,
    MarkovChainBaseline,
    RecencyBaseline,
    StageMeanRevenueBaseline,
    load_baseline,
)
from journey_ml.models.calibration import BTYD_STACK_COLUMNS, btyd_stack_margin, fit_btyd_stack
from journey_ml.models.tasks import PRIMARY, SLOTS, TASKS, task_for, tasks_for
from journey_ml.models.tuning import tune
from tests.synthetic_snapshots import N_STAGES, make_snapshots, split

# n_jobs=1: two OpenMP threads spin badly when other test runs share the 2 cores.
SMALL = {
    "n_estimators": 40,
    "num_leaves": 7,
    "min_child_samples": 10,
    "learning_rate": 0.1,
    "n_jobs": 1,
}
CAT = ("channel_code",)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    X, y = split(make_snapshots(800, seed=1))
    Xv, yv = split(make_snapshots(400, seed=2))
    Xt, yt = split(make_snapshots(400, seed=3))
    return {"X": X, "y": y, "Xv": Xv, "yv": yv, "Xt": Xt, "yt": yt}


# (id, task, factory): every estimator the pipeline can report, same interface.
ESTIMATORS: list[tuple[str, str, Callable[[], Any]]] = [
    (
        "next_stage_model",
        "next_stage",
        lambda: NextStageModel(n_classes=N_STAGES, categorical_features=CAT, **SMALL),
    ),
    (
        "next_stage_markov_offset",
        "next_stage",
        lambda: NextStageModel(n_classes=N_STAGES, stage_prior_column="current_stage", **SMALL),
    ),
    ("drop_off_platt", "drop_off", lambda: DropOffModel(categorical_features=CAT, **SMALL)),
    (
        "drop_off_isotonic",
        "drop_off",
        lambda: DropOffModel(
            calibration_method="isotonic", bagging_fraction=0.8, feature_fraction=0.8, **SMALL
        ),
    ),
    ("revenue_model", "revenue", lambda: RevenueModel(categorical_features=CAT, **SMALL)),
    ("class_prior_stage", "next_stage", lambda: ClassPriorBaseline(n_classes=N_STAGES)),
    ("class_prior_drop", "drop_off", lambda: ClassPriorBaseline(n_classes=2)),
    ("markov_chain", "next_stage", lambda: MarkovChainBaseline(n_classes=N_STAGES)),
    ("recency", "drop_off", lambda: RecencyBaseline()),
    ("stage_mean_revenue", "revenue", lambda: StageMeanRevenueBaseline()),
]
IDS = [e[0] for e in ESTIMATORS]
N_CLASSES = {"next_stage": N_STAGES, "drop_off": 2}


def _fit(est: Any, task: str, data: dict[str, Any]) -> Any:
    return est.fit(data["X"], data["y"][task], X_valid=data["Xv"], y_valid=data["yv"][task])


def _outputs(est: Any, X: pd.DataFrame) -> list[np.ndarray]:
    out = [np.asarray(est.predict(X))]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return out


@pytest.mark.parametrize(("name", "task", "factory"), ESTIMATORS, ids=IDS)
def test_estimator_contract(
    name: str, task: str, factory: Callable[[], Any], data: dict[str, Any]
) -> None:
    est = factory()
    Xt = data["Xt"]
    # Refuses use before fit.
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(Xt)
    if hasattr(est, "predict_proba"):
        with pytest.raises(NotFittedError):
            est.predict_proba(Xt)
    with pytest.raises(NotFittedError):
        est.to_dict()
    if hasattr(est, "predict_raw"):
        with pytest.raises(NotFittedError):
            est.predict_raw(Xt)
    # sklearn contract: clone keeps hyperparameters, fit returns self.
    assert clone(est).get_params() == est.get_params()
    assert _fit(est, task, data) is est
    pred = np.asarray(est.predict(Xt))
    assert pred.shape == (len(Xt),)
    if task == "revenue":
        assert is_regressor(est)
        assert np.isfinite(pred).all() and (pred >= 0).all()
    else:
        assert is_classifier(est)
        k = N_CLASSES[task]
        proba = est.predict_proba(Xt)
        assert proba.shape == (len(Xt), k)
        assert np.array_equal(est.classes_, np.arange(k))
        assert np.all((proba >= 0) & (proba <= 1))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
        assert set(np.unique(pred)) <= set(range(k))
        if task == "next_stage":
            np.testing.assert_array_equal(pred, np.argmax(proba, axis=1))
    # Deterministic for a seed: an independent refit gives bit-identical predictions.
    again = _fit(clone(est), task, data)
    for a, b in zip(_outputs(est, Xt), _outputs(again, Xt), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "task", "factory"), ESTIMATORS, ids=IDS)
def test_save_load_round_trip(
    name: str, task: str, factory: Callable[[], Any], data: dict[str, Any], tmp_path: Path
) -> None:
    est = _fit(factory(), task, data)
    est.save(tmp_path / name)
    loaded = type(est).load(tmp_path / name)
    is_baseline = type(est).__module__ == "journey_ml.models.baselines"
    generic = (load_baseline if is_baseline else load_model)(tmp_path / name)
    assert loaded.get_params() == est.get_params()
    for other in (loaded, generic):
        for a, b in zip(_outputs(est, data["Xt"]), _outputs(other, data["Xt"]), strict=True):
            np.testing.assert_array_equal(a, b)
    # Persisted metadata is plain JSON: no pickle anywhere in the directory.
    for file in (tmp_path / name).iterdir():
        if file.suffix == ".json":
            json.loads(file.read_text())
        assert file.suffix in {".json", ".txt"}


def test_lightgbm_models_beat_baselines_on_real_signal(data: dict[str, Any]) -> None:
    X, y, Xv, yv, Xt, yt = (data[k] for k in ("X", "y", "Xv", "yv", "Xt", "yt"))
    stage = NextStageModel(n_classes=N_STAGES, **SMALL).fit(
        X, y["next_stage"], X_valid=Xv, y_valid=yv["next_stage"]
    )
    markov = MarkovChainBaseline(n_classes=N_STAGES).fit(X, y["next_stage"])
    labels = list(range(N_STAGES))
    m = next_stage_metrics(yt["next_stage"], stage.predict_proba(Xt), labels=labels)
    b = next_stage_metrics(yt["next_stage"], markov.predict_proba(Xt), labels=labels)
    assert m["log_loss"] < b["log_loss"] - 0.05
    assert m["accuracy"] > b["accuracy"]

    drop = DropOffModel(**SMALL).fit(X, y["drop_off"], X_valid=Xv, y_valid=yv["drop_off"])
    recency = RecencyBaseline().fit(X, y["drop_off"])
    m = drop_off_metrics(yt["drop_off"], drop.predict_proba(Xt)[:, 1])
    b = drop_off_metrics(yt["drop_off"], recency.predict_proba(Xt)[:, 1])
    assert m["roc_auc"] > b["roc_auc"] + 0.05
    assert m["brier"] < b["brier"]

    revenue = RevenueModel(**SMALL).fit(X, y["revenue"], X_valid=Xv, y_valid=yv["revenue"])
    stage_mean = StageMeanRevenueBaseline().fit(X, y["revenue"])
    m = revenue_metrics(yt["revenue"], revenue.predict(Xt))
    b = revenue_metrics(yt["revenue"], stage_mean.predict(Xt))
    assert m["gini"] > b["gini"] + 0.1
    assert m["spearman"] > b["spearman"]


def test_drop_off_calibration_fixes_a_shifted_base_rate() -> None:
    # Training period has far fewer drop-offs than validation/test: uncalibrated risk is too low.
    X, y = split(make_snapshots(1500, seed=10, drop_intercept=-2.5))
    Xv, yv = split(make_snapshots(800, seed=11, drop_intercept=0.0))
    Xt, yt = split(make_snapshots(800, seed=12, drop_intercept=0.0))
    for method in ("platt", "isotonic"):
        cal = DropOffModel(calibration_method=method, **SMALL).fit(
            X, y["drop_off"], X_valid=Xv, y_valid=yv["drop_off"]
        )
        raw = DropOffModel(calibrate=False, **SMALL).fit(
            X, y["drop_off"], X_valid=Xv, y_valid=yv["drop_off"]
        )
        rep = cal.calibration_report_
        assert rep["log_loss_after"] < rep["log_loss_before"]
        assert rep["ece_after"] < rep["ece_before"]
        assert raw.calibration_report_ == {} and raw.calibrator_ == {
            "method": "platt",
            "a": 1.0,
            "b": 0.0,
        }
        before = drop_off_metrics(yt["drop_off"], raw.predict_proba(Xt)[:, 1])
        after = drop_off_metrics(yt["drop_off"], cal.predict_proba(Xt)[:, 1])
        # Out of sample too, on a fresh draw from the validation distribution.
        assert after["log_loss"] < before["log_loss"]
        assert after["ece"] < before["ece"]
        if method == "platt":
            # Platt is monotone in the margin, so the ranking (AUC) is unchanged.
            assert after["roc_auc"] == pytest.approx(before["roc_auc"], abs=1e-12)


def test_temperature_scaling_softens_an_overconfident_next_stage_model() -> None:
    # Clean training labels, noisy later periods: the trained model is overconfident there.
    X, y = split(make_snapshots(1500, seed=20))
    Xv, yv = split(make_snapshots(800, seed=21, stage_noise=0.4))
    Xt, yt = split(make_snapshots(800, seed=22, stage_noise=0.4))
    params = {**SMALL, "num_leaves": 31, "min_child_samples": 5}
    cal = NextStageModel(n_classes=N_STAGES, **params).fit(
        X, y["next_stage"], X_valid=Xv, y_valid=yv["next_stage"]
    )
    raw = NextStageModel(n_classes=N_STAGES, calibrate=False, **params).fit(
        X, y["next_stage"], X_valid=Xv, y_valid=yv["next_stage"]
    )
    assert cal.calibrator_["temperature"] > 1.0
    rep = cal.calibration_report_
    assert rep["log_loss_after"] < rep["log_loss_before"]
    labels = list(range(N_STAGES))
    before = next_stage_metrics(yt["next_stage"], raw.predict_proba(Xt), labels=labels)
    after = next_stage_metrics(yt["next_stage"], cal.predict_proba(Xt), labels=labels)
    assert after["log_loss"] < before["log_loss"]
    # Temperature keeps each row's class order, hence the same predicted stage.
    np.testing.assert_array_equal(cal.predict(Xt), raw.predict(Xt))


def test_revenue_scale_calibration_matches_validation_mean() -> None:
    X, y = split(make_snapshots(1000, seed=30))
    Xv, yv = split(make_snapshots(500, seed=31))
    yv_doubled = yv["revenue"] * 2.0
    model = RevenueModel(**SMALL).fit(X, y["revenue"], X_valid=Xv, y_valid=yv_doubled)
    assert model.predict(Xv).mean() == pytest.approx(yv_doubled.mean(), rel=1e-9)
    assert model.calibration_report_["mean_ratio_after"] == pytest.approx(1.0)
    assert model.calibrator_["scale"] > 1.2
    np.testing.assert_allclose(
        model.predict(Xv), np.exp(model.predict_raw(Xv)) * model.calibrator_["scale"]
    )


def test_next_stage_pads_classes_absent_from_training(data: dict[str, Any]) -> None:
    keep = np.isin(data["y"]["next_stage"], [1, 2, 4])
    X, y = data["X"][keep], data["y"]["next_stage"][keep]
    model = NextStageModel(n_classes=N_STAGES, **SMALL).fit(X, y)
    proba = model.predict_proba(data["Xt"])
    floor = 1.0 / (len(y) + N_STAGES)
    assert proba.shape == (len(data["Xt"]), N_STAGES)
    np.testing.assert_allclose(proba[:, [0, 3, 5]], floor)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert model.trained_classes_.tolist() == [1, 2, 4]
    assert set(model.predict(data["Xt"])) <= {1, 2, 4}


def test_raw_margin_is_the_booster_output_at_best_iteration(data: dict[str, Any]) -> None:
    model = DropOffModel(**SMALL).fit(
        data["X"], data["y"]["drop_off"], X_valid=data["Xv"], y_valid=data["yv"]["drop_off"]
    )
    raw = model.predict_raw(data["Xt"])
    direct = model.booster_.predict(
        data["Xt"].to_numpy(dtype=float), raw_score=True, num_iteration=model.best_iteration_
    )
    np.testing.assert_array_equal(raw, direct)
    assert 1 <= model.best_iteration_ <= SMALL["n_estimators"]
    cal = model.calibrator_
    np.testing.assert_allclose(
        model.predict_proba(data["Xt"])[:, 1],
        1 / (1 + np.exp(-(cal["a"] * raw + cal["b"]))),
        rtol=1e-12,
    )
    assert list(model.feature_names_in_) == list(data["X"].columns)
    assert model.booster_.feature_name() == list(data["X"].columns)


def test_fit_validates_inputs(data: dict[str, Any]) -> None:
    X = data["X"]
    with pytest.raises(ValueError, match="stage index 7 but n_classes=6"):
        NextStageModel(n_classes=6, **SMALL).fit(X, np.full(len(X), 7))
    with pytest.raises(ValueError, match=r"0/1 drop-off labels; got 2\.0"):
        DropOffModel(**SMALL).fit(X, np.full(len(X), 2))
    with pytest.raises(ValueError, match=">= 0"):
        RevenueModel(**SMALL).fit(X, -np.ones(len(X)))
    with pytest.raises(ValueError, match="y contains NaN"):
        RevenueModel(**SMALL).fit(X, np.full(len(X), np.nan))
    with pytest.raises(ValueError, match="together"):
        DropOffModel(**SMALL).fit(X, data["y"]["drop_off"], X_valid=data["Xv"])
    with pytest.raises(
        ValueError, match=r"'chanel_code' is not a feature column \(did you mean 'channel_code'"
    ):
        DropOffModel(categorical_features=("chanel_code",), **SMALL).fit(X, data["y"]["drop_off"])
    with pytest.raises(ValueError, match="non-negative integer codes"):
        DropOffModel(categorical_features=("engagement",), **SMALL).fit(X, data["y"]["drop_off"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DropOffModel(**SMALL).fit(X, data["y"]["drop_off"][:-1])
    with pytest.raises(ValueError, match="calibration_method"):
        DropOffModel(calibration_method="sigmoid", **SMALL).fit(X, data["y"]["drop_off"])
    model = DropOffModel(**SMALL).fit(X, data["y"]["drop_off"])
    with pytest.raises(ValueError, match=r"missing:\n- noise"):
        model.predict_proba(X.drop(columns=["noise"]))


def test_sample_weight_changes_the_fit(data: dict[str, Any]) -> None:
    X, y = data["X"], data["y"]["drop_off"]
    w = np.where(y == 1, 5.0, 1.0)
    plain = DropOffModel(calibrate=False, **SMALL).fit(X, y)
    weighted = DropOffModel(calibrate=False, **SMALL).fit(X, y, sample_weight=w)
    assert (
        weighted.predict_proba(data["Xt"])[:, 1].mean()
        > plain.predict_proba(data["Xt"])[:, 1].mean()
    )
    with pytest.raises(ValueError, match="sample_weight"):
        DropOffModel(**SMALL).fit(X, y, sample_weight=w[:-1])


def test_load_refuses_wrong_kind_and_missing_files(data: dict[str, Any], tmp_path: Path) -> None:
    DropOffModel(**SMALL).fit(data["X"], data["y"]["drop_off"]).save(tmp_path / "drop")
    with pytest.raises(ModelBundleError, match="expected 'revenue'"):
        RevenueModel.load(tmp_path / "drop")
    with pytest.raises(ModelBundleError, match=r"missing model\.txt"):
        DropOffModel.load(tmp_path / "nowhere")
    (tmp_path / "drop" / "meta.json").write_text('{"kind": "dropoff"}')
    with pytest.raises(ModelBundleError, match="did you mean 'drop_off'"):
        load_model(tmp_path / "drop")


def test_markov_offset_starts_from_the_transition_matrix(
    data: dict[str, Any], tmp_path: Path
) -> None:
    X, y, Xt = data["X"], data["y"]["next_stage"], data["Xt"]
    model = NextStageModel(n_classes=N_STAGES, stage_prior_column="current_stage", **SMALL)
    model.fit(X, y, X_valid=data["Xv"], y_valid=data["yv"]["next_stage"])
    markov = MarkovChainBaseline(n_classes=N_STAGES, smoothing=1.0).fit(X, y)
    np.testing.assert_allclose(model.stage_prior_, markov.transition_)
    offset = model.init_margin(Xt)
    np.testing.assert_allclose(offset, np.log(markov.predict_proba(Xt)))
    booster_raw = model.booster_.predict(
        Xt.to_numpy(dtype=float), raw_score=True, num_iteration=model.best_iteration_
    )
    np.testing.assert_allclose(model.predict_raw(Xt), booster_raw + offset)
    # The offset is part of the saved model, so a reload predicts the same.
    loaded = NextStageModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    # It beats the Markov chain it starts from.
    labels = list(range(N_STAGES))
    m = next_stage_metrics(data["yt"]["next_stage"], model.predict_proba(Xt), labels=labels)
    b = next_stage_metrics(data["yt"]["next_stage"], markov.predict_proba(Xt), labels=labels)
    assert m["log_loss"] < b["log_loss"]
    with pytest.raises(ValueError, match=r"stage_prior_column: 'stage' is not a feature column"):
        NextStageModel(n_classes=N_STAGES, stage_prior_column="stage", **SMALL).fit(X, y)
    plain = NextStageModel(n_classes=N_STAGES, **SMALL).fit(X, y)
    assert not plain.init_margin(Xt).any()


def test_markov_offset_with_classes_absent_from_training_still_sums_to_one(data: dict[str, Any]) -> None:
    # Regression: the offset gives unseen classes softmax mass; rows must still sum to 1.
    keep = np.isin(data["y"]["next_stage"], [1, 2, 4])
    X, y = data["X"][keep], data["y"]["next_stage"][keep]
    model = NextStageModel(n_classes=N_STAGES, stage_prior_column="current_stage", **SMALL).fit(X, y)
    proba = model.predict_proba(data["Xt"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(proba[:, [0, 3, 5]], 1.0 / (len(y) + N_STAGES))


def test_monotone_constraints_hold_against_the_data(tmp_path: Path) -> None:
    # The label *falls* with x (confounded data); the constraint says x never lowers risk.
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.integers(0, 5, 4000).astype(float), "z": rng.normal(size=4000)})
    y = (rng.random(4000) < 0.6 - 0.1 * X["x"] + 0.1 * X["z"]).astype(int)
    free = DropOffModel(**SMALL).fit(X, y)
    tied = DropOffModel(monotone_constraints=(("x", 1),), **SMALL).fit(X, y)
    grid = pd.DataFrame({"x": np.arange(5.0), "z": np.zeros(5)})
    assert np.diff(free.predict_proba(grid)[:, 1]).min() < 0  # the data says "falls"
    assert np.diff(tied.predict_proba(grid)[:, 1]).min() >= 0  # the constraint wins
    loaded = DropOffModel.load(tied.save(tmp_path / "m"))
    assert loaded.monotone_constraints == (("x", 1),)
    np.testing.assert_array_equal(loaded.predict_proba(grid), tied.predict_proba(grid))
    with pytest.raises(ValueError, match=r"monotone_constraints: 'w' is not a feature column"):
        DropOffModel(monotone_constraints=(("w", 1),), **SMALL).fit(X, y)


# ---------------------------------------------------------------------------- task registry
def test_task_registry_is_the_one_home_of_every_task() -> None:
    assert SLOTS == ("next_stage", "drop_off", "revenue")
    assert {t.slot for t in TASKS.values()} == set(SLOTS)
    assert task_for("revenue").label == "future_revenue"
    assert task_for("revenue", "conversions").label == "future_conversions"
    assert task_for("revenue", "conversions").slot == "revenue"
    with pytest.raises(ValueError, match="unknown task 'drop'"):
        task_for("drop")
    with pytest.raises(ValueError, match="no value model for unit 'drop_offs'"):
        task_for("revenue", "drop_offs")
    # The gate's metrics are the registry's, and a metric every task reports.
    assert PRIMARY == {"drop_off": ("roc_auc", "max"), "next_stage": ("log_loss", "min")}
    frame = pd.DataFrame(
        {"next_stage": [0, 1], "drop_off": [1, 0], "future_revenue": [3.0, 0.0], "future_conversions": [1, 0]}
    )
    np.testing.assert_array_equal(task_for("revenue", "conversions").target(frame), [1.0, 0.0])
    np.testing.assert_array_equal(task_for("drop_off").target(frame), [1, 0])


def _shape(stages: int, unit: str) -> JourneyShape:
    parts = {name: Part(True, "") for name in PARTS}
    parts["next_stage"] = Part(stages > 1, "")
    return JourneyShape(parts=parts, value_unit=unit)


@pytest.mark.parametrize(
    ("stages", "unit", "names"),
    [
        (6, "revenue", ["next_stage", "drop_off", "revenue"]),
        (6, "conversions", ["next_stage", "drop_off", "conversions"]),
        (1, "drop_offs", ["drop_off"]),
    ],
)
def test_tasks_enabled_by_the_journey_shape(stages: int, unit: str, names: list[str]) -> None:
    shape = _shape(stages, unit)
    assert [t.name for t in tasks_for(shape)] == names
    # The registry's rule and the shape's own list of tasks agree.
    assert [t.slot for t in tasks_for(shape)] == list(shape.tasks)


def test_make_model_takes_the_config_hyperparameters(data: dict[str, Any]) -> None:
    config = TrainConfig(seed=7, model=ModelConfig(num_leaves=9, lambda_l2=0.5))

    spec = SimpleNamespace(  # the FeatureSpec attributes make_model reads
        categorical_features=("channel_code",),
        friction_risk_direction={"engagement": 1},
        journey_map=SimpleNamespace(stages=list(range(N_STAGES))),
        btyd=(),
        feature_names=["engagement", *BTYD_STACK_COLUMNS],
    )
    for slot in SLOTS:
        model = task_for(slot).make_model(spec, config, {"learning_rate": 0.2})  # type: ignore[arg-type]
        assert isinstance(model, task_for(slot).estimator)
        params = model.get_params()
        assert params["num_leaves"] == 9 and params["lambda_l2"] == 0.5 and params["random_state"] == 7
        assert params["learning_rate"] == 0.2
    assert task_for("drop_off").make_model(spec, config).monotone_constraints == (("engagement", 1),)  # type: ignore[arg-type]
    assert task_for("revenue").make_model(spec, config).monotone_constraints == (("engagement", -1),)  # type: ignore[arg-type]
    # The BG/NBD stack is on only when the spec fitted BG/NBD and has its columns.
    assert task_for("drop_off").make_model(spec, config).btyd_stack is False  # type: ignore[arg-type]
    spec.btyd = ("a fit",)
    assert task_for("drop_off").make_model(spec, config).btyd_stack is True  # type: ignore[arg-type]
    spec.feature_names = ["engagement"]
    assert task_for("drop_off").make_model(spec, config).btyd_stack is False  # type: ignore[arg-type]


def test_estimator_defaults_are_model_config_defaults() -> None:
    defaults = ModelConfig()
    for cls in (NextStageModel, DropOffModel, RevenueModel):
        params = cls().get_params()
        for name, value in defaults.estimator_params().items():
            assert params[name] == value, (cls.__name__, name)
    assert RevenueModel().tweedie_variance_power == defaults.tweedie_variance_power


def test_fit_calibration_refits_only_the_calibrator(data: dict[str, Any]) -> None:
    # Validation rows with a shifted base rate: calibrating on them moves the mean risk.
    X, y = split(make_snapshots(1500, seed=10, drop_intercept=-2.5))
    Xv, yv = split(make_snapshots(800, seed=11, drop_intercept=0.0))
    model = DropOffModel(**SMALL).fit(X, y["drop_off"], X_valid=X.iloc[:400], y_valid=y["drop_off"][:400])
    trees = model.booster_.model_to_string()
    before = model.predict_proba(Xv)[:, 1].mean()
    assert model.fit_calibration(Xv, yv["drop_off"]) is model
    assert model.booster_.model_to_string() == trees
    assert abs(model.predict_proba(Xv)[:, 1].mean() - yv["drop_off"].mean()) < abs(before - yv["drop_off"].mean())
    assert model.calibration_report_["n_valid"] == len(Xv)
    with pytest.raises(NotFittedError):
        DropOffModel().fit_calibration(Xv, yv["drop_off"])


def test_tuning_fits_with_the_final_fits_weights(data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    fit = DropOffModel.fit

    def spy(self: DropOffModel, *args: Any, **kwargs: Any) -> DropOffModel:
        seen.append(kwargs.get("sample_weight"))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(DropOffModel, "fit", spy)
    w = np.linspace(1.0, 3.0, len(data["X"]))
    result = tune(
        "drop_off", lambda params: DropOffModel(**{**SMALL, **params}), data["X"], data["y"]["drop_off"],
        data["Xv"], data["yv"]["drop_off"], trials=2, timeout_seconds=None, seed=0, sample_weight=w,
        log_to_mlflow=False,
    )
    assert result.trials == 2 and len(seen) == 2
    assert all(s is w for s in seen)


def test_next_stage_fits_on_the_weekly_rows_only(data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from journey_ml.pipeline.steps import fit_models, fit_rows

    # Rows past train_weekly / valid_weekly stand for the event-anchored rows (weighted ×5 here):
    # next stage skips them (Task.anchored_rows), drop-off fits on everything with the weights.
    frame = lambda X, y: X.assign(**{k: v for k, v in y.items()})  # noqa: E731
    train = pd.concat([frame(data["X"], data["y"]), frame(data["Xv"], data["yv"])], ignore_index=True)
    valid = frame(data["Xt"], data["yt"])
    spec = SimpleNamespace(feature_names=list(data["X"].columns), categorical_features=[], friction_risk_direction={}, btyd=(),
                           journey_map=SimpleNamespace(stages=[None] * N_STAGES))
    weight = np.r_[np.ones(len(data["X"])), np.full(len(data["Xv"]), 5.0)]
    splits = SimpleNamespace(spec=spec, train=train, valid=valid, train_weight=weight, train_weekly=len(data["X"]),
                             valid_weekly=300, tasks=("next_stage", "drop_off"), value_unit="revenue")
    tr, w, va = fit_rows(splits, "next_stage")  # type: ignore[arg-type]
    assert len(tr) == len(data["X"]) and (w == 1.0).all() and len(va) == 300
    tr, w, va = fit_rows(splits, "drop_off")  # type: ignore[arg-type]
    assert len(tr) == len(train) and w is weight and len(va) == len(valid)
    seen: dict[str, int] = {}
    for cls in (NextStageModel, DropOffModel):
        fit = cls.fit

        def spy(self: Any, X: Any, *args: Any, fit: Any = fit, **kwargs: Any) -> Any:
            seen[self._kind] = len(X)
            return fit(self, X, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", spy)
    config = TrainConfig(model=ModelConfig(**SMALL))
    fit_models(splits, config)  # type: ignore[arg-type]
    assert seen == {"next_stage": len(data["X"]), "drop_off": len(train)}


def _btyd_frame(n: int, seed: int, age_shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose drop-off follows a BTYD-like score that rises with age beyond the training range."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(0, 100, n) + age_shift
    other = rng.normal(size=n)
    logit_quiet = -1.0 + 0.03 * age + rng.normal(size=n)
    alive = np.where(rng.random(n) < 0.3, 1.0, rng.uniform(0.2, 1.0, n))
    z = logit_quiet - 1.5 * np.log(alive) + 1.5 * other
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    X = pd.DataFrame({
        "age": age,
        "other": other,
        BTYD_STACK_COLUMNS[0]: 1 / (1 + np.exp(-logit_quiet)),
        BTYD_STACK_COLUMNS[1]: alive,
    })
    return X, y


def test_btyd_stack_extrapolates_where_the_trees_are_flat(tmp_path: Path) -> None:
    # Training rows are young; validation and test rows are older, where the trees are flat
    # in age but BG/NBD's terms keep moving: the stack ranks and calibrates the test rows better.
    X, y = _btyd_frame(4000, 1)
    Xv, yv = _btyd_frame(2000, 2, age_shift=60.0)
    Xt, yt = _btyd_frame(4000, 3, age_shift=60.0)
    plain = DropOffModel(**SMALL).fit(X, y, X_valid=Xv, y_valid=yv)
    stacked = DropOffModel(btyd_stack=True, **SMALL).fit(X, y, X_valid=Xv, y_valid=yv)
    assert plain.stack_ is None and stacked.stack_ is not None
    assert stacked.booster_.model_to_string() == plain.booster_.model_to_string()  # same trees
    m_plain = drop_off_metrics(yt, plain.predict_proba(Xt)[:, 1])
    m_stacked = drop_off_metrics(yt, stacked.predict_proba(Xt)[:, 1])
    assert m_stacked["roc_auc"] > m_plain["roc_auc"] + 0.002
    assert m_stacked["brier"] < m_plain["brier"]
    # The terms live in the margin: predict_raw = trees + init_margin, and TreeSHAP explains the trees.
    trees = stacked.booster_.predict(Xt.to_numpy(), raw_score=True, num_iteration=stacked.best_iteration_)
    np.testing.assert_allclose(stacked.predict_raw(Xt), trees + stacked.init_margin(Xt), rtol=0, atol=1e-12)
    assert np.ptp(stacked.init_margin(Xt)) > 0
    loaded = load_model(stacked.save(tmp_path / "m"))
    assert loaded.stack_ == stacked.stack_
    np.testing.assert_array_equal(loaded.predict_proba(Xt), stacked.predict_proba(Xt))


def test_btyd_stack_is_off_without_values_and_needs_its_columns() -> None:
    X, y = _btyd_frame(1500, 4)
    Xv, yv = _btyd_frame(800, 5)
    Xv[list(BTYD_STACK_COLUMNS)] = np.nan  # no BG/NBD fit: the columns are NaN
    plain = DropOffModel(**SMALL).fit(X, y, X_valid=Xv, y_valid=yv)
    stacked = DropOffModel(btyd_stack=True, **SMALL).fit(X, y, X_valid=Xv, y_valid=yv)
    assert stacked.stack_ is None
    np.testing.assert_array_equal(stacked.predict_proba(Xv), plain.predict_proba(Xv))
    # Refitting the calibration on rows with values fits the stack; the trees stay.
    stacked.fit_calibration(*_btyd_frame(800, 6))
    assert stacked.stack_ is not None and stacked.booster_.model_to_string() == plain.booster_.model_to_string()
    with pytest.raises(ValueError, match="btyd_stack: 'btyd_p_alive' is not a feature column"):
        DropOffModel(btyd_stack=True, **SMALL).fit(X.drop(columns=[BTYD_STACK_COLUMNS[1]]), y)


def test_fit_btyd_stack_recovers_the_weights_and_handles_missing_rows() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    raw = rng.normal(size=n)
    quiet, alive = rng.uniform(0.05, 0.95, n), rng.uniform(0.1, 1.0, n)
    cols = np.column_stack([quiet, alive])
    cols[:2000] = np.nan
    lq, la = np.log(quiet / (1 - quiet)), np.log(alive)
    z = np.where(np.arange(n) < 2000, 2.0 * raw + 0.7, 2.0 * raw + 1.0 * lq - 0.6 * la - 0.3)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    stack = fit_btyd_stack(raw, cols, y)
    assert stack is not None
    # Margin units: the terms' coefficients over the margin's (2.0).
    assert stack["logit_p_no_conversion"] == pytest.approx(0.5, abs=0.06)
    assert stack["log_p_alive"] == pytest.approx(-0.3, abs=0.06)
    assert stack["missing"] == pytest.approx(0.5, abs=0.08)
    margin = btyd_stack_margin(stack, cols)
    assert np.all(margin[:2000] == stack["missing"]) and np.isfinite(margin).all()
    assert fit_btyd_stack(raw, cols, np.zeros(n)) is None  # one class
    assert fit_btyd_stack(raw, np.full((n, 2), np.nan), y) is None  # no BG/NBD values
    assert fit_btyd_stack(-raw, cols, y) is None  # the margin's weight would be negative
