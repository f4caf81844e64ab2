"""The promotion gate's decision (``journey_ml.evaluation.gate``); ``beats`` has its table in test_train."""

from __future__ import annotations

import pytest

from journey_ml.evaluation.gate import PRIMARY, decide, primary_change, primary_metrics


def test_primary_metrics_are_those_of_the_fitted_tasks() -> None:
    report = {"model": {"drop_off": {"roc_auc": 0.8, "log_loss": 0.4}, "revenue": {"mae": 3.0}}}
    assert primary_metrics(report) == {"drop_off.roc_auc": 0.8}  # one-stage run: no next-stage metric
    report["model"]["next_stage"] = {"log_loss": 0.9, "accuracy": 0.6}
    assert primary_metrics(report) == {"drop_off.roc_auc": 0.8, "next_stage.log_loss": 0.9}
    assert set(PRIMARY) == {"drop_off", "next_stage"}


@pytest.mark.parametrize(
    ("new", "champion", "expected"),
    [
        ({"drop_off.roc_auc": 0.7}, None, (True, "no champion yet")),
        ({"drop_off.roc_auc": 0.8, "next_stage.log_loss": 0.5}, {"drop_off.roc_auc": 0.7, "next_stage.log_loss": 0.5},
         (True, "beats the champion on the primary metrics")),
        ({"drop_off.roc_auc": 0.8, "next_stage.log_loss": 0.6}, {"drop_off.roc_auc": 0.7, "next_stage.log_loss": 0.5},
         (False, "does not beat the champion")),  # better on one task, worse on the other
        ({"drop_off.roc_auc": 0.7, "next_stage.log_loss": 0.5}, {"drop_off.roc_auc": 0.7, "next_stage.log_loss": 0.5},
         (False, "does not beat the champion")),  # a tie is not an improvement
        # The champion has no next-stage model: judged on drop-off alone.
        ({"drop_off.roc_auc": 0.8, "next_stage.log_loss": 9.9}, {"drop_off.roc_auc": 0.7},
         (True, "beats the champion on the primary metrics")),
    ],
)  # fmt: skip
def test_decide(new: dict[str, float], champion: dict[str, float] | None, expected: tuple[bool, str]) -> None:
    assert decide(new, champion) == expected


def test_primary_change_is_now_minus_then_where_both_have_it() -> None:
    now = {"drop_off": {"roc_auc": 0.74, "brier": 0.2}, "next_stage": {"log_loss": 0.5}}
    then = {"drop_off": {"roc_auc": 0.80}, "revenue": {"mae": 1.0}}
    assert primary_change(now, then) == {"drop_off.roc_auc": pytest.approx(-0.06)}
    assert primary_change({}, then) == {}
