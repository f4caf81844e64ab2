"""``journey-ml monitor``: score-distribution drift between two score files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from journey_ml.cli.app import app, console, print_json, user_errors


def read_scores(path: Path) -> pd.DataFrame:
    """A ``journey-ml score`` output file (.parquet, .csv or .jsonl); ids stay strings."""
    from journey_ml.exceptions import EventValidationError

    if not path.exists():
        raise EventValidationError(f"score file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or path.is_dir():
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"customer_id": "str"})
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype={"customer_id": "str"})
    raise EventValidationError(f"unsupported score file suffix {path.suffix!r}; use .parquet, .csv or .jsonl")


@app.command()
def monitor(
    scores_a: Annotated[Path, typer.Argument(help="Reference scores (`journey-ml score` output).")],
    scores_b: Annotated[Path, typer.Argument(help="Current scores to compare with the reference.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit with code 1 when anything is flagged.")] = False,
) -> None:
    """Score-distribution drift (PSI) between two score files: drop-off risk, expected
    revenue or conversions, next stage and the current-stage mix (flagged at PSI ≥ 0.25)."""
    from journey_ml.evaluation.drift import compare_scores

    with user_errors():
        out = compare_scores(read_scores(scores_a), read_scores(scores_b))
    out["reference"], out["current"] = str(scores_a), str(scores_b)
    if json_out:
        print_json(out)
    else:
        table = Table(title=f"Score drift: {scores_a.name} -> {scores_b.name}")
        for col in ("score", "PSI", "level"):
            table.add_column(col)
        for col, value in out["psi"].items():
            table.add_row(col, f"{value:.4f}", out["levels"][col])
        console.print(table)
        for note in out["notes"]:
            console.print(f"[yellow]note:[/] {note}")
        console.print(f"flagged: {', '.join(out['flagged']) or 'nothing'}; watch: {', '.join(out['watch']) or 'nothing'}")
    if fail_on_drift and out["flagged"]:
        raise typer.Exit(1)
