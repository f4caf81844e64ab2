"""``journey-ml retrain`` (drift, backtest, challenger, gate, model card) and ``journey-ml models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.cli.train import (
    ConfigOption,
    JsonOption,
    NameOption,
    SeedOption,
    SetOption,
    TimeoutOption,
    TrackingUriOption,
    TrialsOption,
    load_train_config,
)

DEFAULT_MODEL = "models:/journey-ml@champion"


@app.command()
def retrain(
    events: Annotated[Path, typer.Argument(help="The latest event file (CSV/Parquet/JSONL): the challenger trains on all of it.")],
    model: Annotated[str, typer.Option("--model", help="The champion: an MLflow URI or a bundle directory.")] = DEFAULT_MODEL,
    journey_map: Annotated[Path | None, typer.Option("--journey-map", "-m", help="Journey map for the challenger (default: the champion's).")] = None,
    config: ConfigOption = None,
    trials: TrialsOption = None,
    timeout: TimeoutOption = None,
    seed: SeedOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory the challenger's bundle copy lands in (<out>/<name>).")] = None,
    name: NameOption = None,
    tracking_uri: TrackingUriOption = None,
    set_: SetOption = None,
    card: Annotated[Path | None, typer.Option("--card", help="Also write the model card (markdown) to this file.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Backtest the champion on the labels matured since its training, measure drift, train a
    challenger on the latest data, compare both on the same newest window and promote the
    challenger only through the promotion gate; every step is logged to MLflow."""
    from journey_ml.contract import JourneyMap
    from journey_ml.exceptions import ModelBundleError
    from journey_ml.ingest import load_events
    from journey_ml.pipeline.retrain import run_retrain
    from journey_ml.registry import tracking
    from journey_ml.registry.bundle import load_bundle

    with user_errors():
        cfg = load_train_config(
            config, set_, trials=trials, timeout=timeout, seed=seed, out=out, name=name, tracking_uri=tracking_uri,
            data=str(events), journey_map=str(journey_map) if journey_map else None,
            # The challenger registers under the champion's registered model.
            **{"tracking.registered_model": tracking.registered_model_from_uri(model)},
        )  # fmt: skip
        with progress("retraining", quiet=json_out) as bar:
            task = bar.tasks[0].id
            uri = tracking.configure(cfg.tracking.uri, cfg.tracking.experiment)
            try:
                champion = load_bundle(model, tracking_uri=uri)
            except ModelBundleError as exc:
                raise ModelBundleError(f"{exc}; retrain needs a champion: train a first model with `journey-ml train`") from exc
            jm = JourneyMap.from_yaml(journey_map) if journey_map else champion.journey_map
            loaded = load_events(events, jm)
            result = run_retrain(
                loaded.events, cfg, model, journey_map=jm, champion=champion, rejects=loaded.rejects,
                on_step=lambda msg: bar.update(task, description=msg),
            )  # fmt: skip
    if card is not None:
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text(result.model_card, encoding="utf-8")
    if json_out:
        print_json(result.to_dict())
        return
    print_retrain_summary(result.to_dict())
    if card is not None:
        console.print(f"model card: {card}")


def print_retrain_summary(out: dict[str, Any]) -> None:
    """Drift, the champion's backtest, both models on one window, and the decision."""
    drift = out["drift"]
    console.print(f"[bold]drift[/] flagged: {', '.join(drift['flagged']) or 'nothing'}; watch: {', '.join(drift['watch']) or 'nothing'}")
    for note in drift.get("notes", []):
        console.print(f"[yellow]drift:[/] {note}")
    backtest = out["backtest"]
    if backtest.get("champion"):
        change = ", ".join(f"{k} {v:+.4f}" for k, v in backtest["change"].items())
        console.print(f"[bold]backtest[/] champion v{out['champion_version']} on {backtest['window']['rows']} rows since its training: {change or 'no shared metric'}")
    else:
        console.print(f"[yellow]backtest:[/] {backtest.get('message')}")
    metrics = out["metrics"]
    table = Table(title=f"Same window: {str(metrics['window']['first_cutoff'])[:10]} to {str(metrics['window']['last_cutoff'])[:10]} ({metrics['window']['rows']} rows)")
    for col in ("task", "metric", f"champion v{out['champion_version']}", f"challenger v{out['challenger_version']}"):
        table.add_column(col, justify="right" if col.startswith(("champion", "challenger")) else "left")
    for task, names in {"drop_off": ("roc_auc", "pr_auc", "brier"), "next_stage": ("log_loss", "accuracy"), "revenue": ("mae", "spearman")}.items():
        for metric in names:
            a = (metrics["champion"].get(task) or {}).get(metric)
            b = (metrics["challenger"].get(task) or {}).get(metric)
            if a is not None or b is not None:
                table.add_row(task, metric, "–" if a is None else f"{a:.4f}", "–" if b is None else f"{b:.4f}")
    console.print(table)
    for note in out.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    verdict = "[green]promoted to champion[/]" if out["promoted"] else "[yellow]registered as challenger[/]"
    console.print(f"challenger {out['model_uri']} {verdict} ({out['gate'].get('reason')})")
    console.print(f"retrain run: {out['run_id']}   model card: {out['model_card']}   {out['seconds']:.1f}s")


@app.command()
def models(
    name: Annotated[str, typer.Option("--name", help="Registered model name.")] = "journey-ml",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (else MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the registered versions: aliases, the gate's decision and reason, and when each was champion."""
    import mlflow

    from journey_ml.registry import tracking

    mlflow.set_tracking_uri(tracking.resolve_tracking_uri(tracking_uri))
    with user_errors():
        history = tracking.model_history(name)
    if json_out:
        print_json(history)
        return
    if not history:
        console.print(f"no versions of registered model '{name}' in {tracking.resolve_tracking_uri(tracking_uri)}")
        return
    table = Table(title=f"Registered model {name}: versions and champion history")
    for col in ("version", "aliases", "decision", "reason", "champion", "drop-off AUC", "next-stage log loss"):
        table.add_column(col)
    for v in history:
        new = (v["gate_metrics"] or {}).get("new", {})
        held = "–"
        if v["champion_from"]:
            until = f"{v['champion_until'][:16]} (then v{v['replaced_by']})" if v["champion_until"] else "now"
            held = f"{v['champion_from'][:16]} → {until}"
        table.add_row(
            v["version"], ", ".join(v["aliases"]) or "–", v["decision"] or "–", v["reason"] or "–", held,
            _num(new.get("drop_off.roc_auc")), _num(new.get("next_stage.log_loss")),
        )  # fmt: skip
    console.print(table)


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4f}"
