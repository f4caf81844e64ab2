"""``journey-ml train`` and ``journey-ml score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.cli.features import ENGINE_HELP, SCHEDULER_HELP, Engine
from journey_ml.contract import JourneyMap, TrainConfig, parse_override
from journey_ml.contract.shipped import train_config_path

# The shipped pipelines/train.yaml (package data), whatever the working directory.
DEFAULT_CONFIG = train_config_path()


# Options shared by ``train`` and ``retrain`` (cli/retrain.py).
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline config YAML (default: the shipped pipelines/train.yaml).")]
TrialsOption = Annotated[int | None, typer.Option(help="Optuna trials per model (tuning.trials).")]
TimeoutOption = Annotated[float | None, typer.Option(help="Tuning time budget in seconds (tuning.timeout_seconds).")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.")]
NameOption = Annotated[str | None, typer.Option(help="Bundle name under --out.")]
TrackingUriOption = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (else MLFLOW_TRACKING_URI, else ./mlflow.db).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override any config key: --set split.test_cutoffs=3 (repeatable).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object instead of tables.")]


def load_train_config(
    config: Path | None,
    set_: list[str] | None,
    *,
    trials: int | None,
    timeout: float | None,
    seed: int | None,
    out: Path | None,
    name: str | None,
    tracking_uri: str | None,
    **keys: str | None,
) -> TrainConfig:
    """The train config: ``config`` (default: the shipped one), ``--set`` items, then the
    command's options (``None``: keep the config's value; ``keys``: more dotted keys)."""
    overrides = dict(parse_override(item) for item in set_ or [])
    overrides.update(
        {
            **keys,
            "tuning.trials": trials,
            "tuning.timeout_seconds": timeout,
            "seed": seed,
            "out": str(out) if out else None,
            "name": name,
            "tracking.uri": tracking_uri,
        }
    )
    return TrainConfig.from_yaml(config if config is not None else DEFAULT_CONFIG, overrides)


@app.command()
def train(
    events: Annotated[Path | None, typer.Argument(help="Event file (CSV/Parquet/JSONL); default: the config's data.")] = None,
    journey_map: Annotated[Path | None, typer.Option("--journey-map", "-m", help="Journey map YAML or a shipped map's name, e.g. cdnow (default: the config's).")] = None,
    config: ConfigOption = None,
    trials: TrialsOption = None,
    timeout: TimeoutOption = None,
    seed: SeedOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory the bundle copy lands in (<out>/<name>).")] = None,
    name: NameOption = None,
    tracking_uri: TrackingUriOption = None,
    set_: SetOption = None,
    json_out: JsonOption = False,
    engine: Annotated[Engine, typer.Option("--engine", help=ENGINE_HELP)] = Engine.pandas,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Train the next-stage, drop-off and revenue models, log everything to MLflow and
    register the bundle (champion only if it beats the current champion)."""
    from journey_ml.ingest import load_events
    from journey_ml.pipeline.train import run_training

    with user_errors():
        cfg = load_train_config(
            config, set_, trials=trials, timeout=timeout, seed=seed, out=out, name=name, tracking_uri=tracking_uri,
            data=str(events) if events else None, journey_map=str(journey_map) if journey_map else None,
        )  # fmt: skip
        if cfg.data is None:
            raise typer.BadParameter("give an EVENTS file or set data: in the config", param_hint="EVENTS")
        jm = JourneyMap.from_yaml(cfg.journey_map)
        with progress("training", quiet=json_out) as bar:
            task = bar.tasks[0].id
            if engine is Engine.dask:
                from journey_ml.pipeline.engines import dask_io

                with dask_io.client(scheduler) as client:
                    dask_events = dask_io.read_events(cfg.data, jm, validate=True)
                    result = run_training(
                        dask_events, jm, cfg, on_step=lambda msg: bar.update(task, description=msg), client=client
                    )
            else:
                loaded = load_events(cfg.data, jm)
                result = run_training(loaded.events, jm, cfg, on_step=lambda msg: bar.update(task, description=msg))
    if json_out:
        print_json(result.to_dict())
        return
    console.print(comparison_table(result.metrics, result.baselines))
    print_shape(result.extra.get("journey_shape"))
    if result.extra.get("ranking_message"):
        console.print(f"[yellow]ranking:[/] {result.extra['ranking_message']}")
    verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]registered as challenger[/]"
    console.print(f"model {result.model_uri} {verdict} ({result.gate.get('reason')})")
    console.print(f"bundle: {result.bundle_path}   run: {result.run_id}   {result.seconds:.1f}s")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {result.tracking_uri}")


def comparison_table(metrics: dict, baselines: dict) -> Table:
    """Model vs every baseline on the test window, primary metrics first."""
    columns = {
        "next_stage": ["log_loss", "accuracy", "macro_f1"],
        "drop_off": ["roc_auc", "pr_auc", "brier", "ece", "lift_at_10"],
        "revenue": ["mae", "spearman", "gini"],
    }
    table = Table(title="Test window: model vs baselines")
    table.add_column("task")
    table.add_column("model")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, names in columns.items():
        if task not in metrics:  # switched off by the journey shape (see print_shape)
            continue
        rows = [("lightgbm", metrics[task]), *baselines[task].items()]
        for label, values in rows:
            for metric in names:
                if metric in values:
                    table.add_row(task, label, metric, f"{values[metric]:.4f}")
        table.add_section()
    return table


def print_shape(shape: dict | None) -> None:
    """The parts of the engine the journey shape switched off, and the run's warnings."""
    from journey_ml.labels.shape import JourneyShape

    if not shape:
        return
    for name, reason in JourneyShape.from_dict(shape).off().items():
        console.print(f"[yellow]{name} off:[/] {reason}")
    for warning in shape.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


@app.command()
def score(
    events: Annotated[Path, typer.Argument(help="Event file (CSV/Parquet/JSONL).")],
    model: Annotated[str, typer.Option("--model", help="Bundle directory or MLflow URI, e.g. models:/journey-ml@champion.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    at: Annotated[str | None, typer.Option("--at", help="Scoring time (ISO-8601); default: the latest event.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ URIs.")] = None,
    reasons: Annotated[bool, typer.Option("--reasons/--no-reasons", help="Add the top reason codes per customer.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help=ENGINE_HELP)] = Engine.pandas,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Score every customer active at TIME: stage, next stage, probabilities, drop-off risk, revenue."""
    if engine is Engine.dask:
        _score_dask(events, model, out, at, tracking_uri, reasons, json_out, scheduler)
        return
    from journey_ml.explain import add_reason_codes
    from journey_ml.ingest import load_events
    from journey_ml.registry.bundle import load_bundle
    from journey_ml.registry.scoring import score as score_events

    with user_errors(), progress("scoring", quiet=json_out):
        bundle = load_bundle(model, tracking_uri=tracking_uri)
        loaded = load_events(events, bundle.journey_map)
        scores = score_events(loaded.events, bundle, at=at)
        if reasons:
            scores = add_reason_codes(scores, loaded.events, bundle, at=at)
        write_table(scores, out)
    summary = {
        "out": str(out),
        "customers": len(scores),
        "at": str(at or loaded.events["timestamp"].max()),
        "mean_drop_off_risk": float(scores["drop_off_risk"].mean()) if len(scores) else None,
        # Absent (null), never 0, when the model was trained without revenue.
        "expected_revenue": float(scores["expected_revenue"].sum()) if bundle.value_unit == "revenue" else None,
        "model_version": bundle.version,
        "off": bundle.off_parts(),
    }
    if "expected_conversions" in scores.columns:
        summary["expected_conversions"] = float(scores["expected_conversions"].sum())
    if json_out:
        print_json(summary)
    else:
        console.print(f"scored {summary['customers']} customers at {summary['at']} -> {out}")
        for name, reason in summary["off"].items():
            console.print(f"[yellow]{name} off:[/] {reason}")


def _score_dask(
    events: Path, model: str, out: Path, at: str | None, tracking_uri: str | None, reasons: bool, json_out: bool, scheduler: str | None
) -> None:
    """``score --engine dask``: score partition by partition into a Parquet directory."""
    import dask
    import dask.dataframe as dd

    from journey_ml.pipeline.engines import dask_frames, dask_io
    from journey_ml.registry.bundle import load_bundle

    if out.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        raise typer.BadParameter("the dask engine writes partitioned Parquet: give a directory", param_hint="--out")
    with user_errors(), progress("scoring (dask)", quiet=json_out), dask_io.client(scheduler):
        bundle = load_bundle(model, tracking_uri=tracking_uri)
        loaded = dask_io.read_events(events, bundle.journey_map, validate=True)
        when = pd.Timestamp(at) if at is not None else pd.Timestamp(loaded["timestamp"].max().compute())
        scores = dask_frames.score(loaded, bundle, when, reasons=reasons)
        dask_frames.write_scores(scores, out)
        written = dd.read_parquet(str(out), columns=["drop_off_risk", "expected_revenue"])
        n, risk, revenue = dask.compute(written.shape[0], written["drop_off_risk"].mean(), written["expected_revenue"].sum())
    summary = {
        "out": str(out),
        "customers": int(n),
        "at": str(when),
        "mean_drop_off_risk": float(risk) if n else None,
        "expected_revenue": float(revenue),
        "model_version": bundle.version,
        "engine": "dask",
    }
    if json_out:
        print_json(summary)
    else:
        console.print(f"scored {summary['customers']} customers at {summary['at']} -> {out}/ (partitioned Parquet)")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, date_format="iso")
    else:
        raise typer.BadParameter(f"unsupported output suffix {path.suffix!r}; use .parquet, .csv or .jsonl", param_hint="--out")
