"""Markov removal-effect attribution checked against the reference tool, ChannelAttribution.

Run: ``.venv/bin/python benchmarks/bench_attribution.py``

Fetches the ``channelattribution==2.2.5`` sdist with pip (not committed), reads its path
data ``src/cypack/data/Data.csv``, installs ChannelAttribution into a separate venv under
``bench_output/`` and runs ``markov_model(order=1)`` there through a subprocess; then
runs our closed-form first-order removal effect (:mod:`journey_ml.attribution`) on the
same data and prints a markdown table of conversions per channel and their relative
difference (target: every channel within 2%).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
import venv
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_output" / "attribution"
VERSION = "2.2.5"

REFERENCE = """
import json, sys, time
import pandas as pd
from ChannelAttribution import markov_model
data = pd.read_csv(sys.argv[1], sep=";")
t = time.perf_counter()
res = markov_model(data, "path", "total_conversions", var_null="total_null", order=1, out_more=True, verbose=0)
seconds = time.perf_counter() - t
out = res["result"] if isinstance(res, dict) else res
print(json.dumps({"channels": out["channel_name"].tolist(), "conversions": out["total_conversions"].tolist(), "seconds": seconds}))
"""


def fetch_data() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    sdist = next(OUT.glob(f"[cC]hannel[aA]ttribution-{VERSION}.tar.gz"), None)
    if sdist is None:
        subprocess.run(
            # ``--no-binary :all:`` would also build the sdist's build dependencies from source
            # (setuptools' own sdist fails to build that way); only ours needs to be an sdist.
            [sys.executable, "-m", "pip", "download", "--no-binary", "channelattribution", "--no-deps",
             f"channelattribution=={VERSION}", "-d", str(OUT)],
            check=True,
        )
        sdist = next(OUT.glob(f"[cC]hannel[aA]ttribution-{VERSION}.tar.gz"))
    target = OUT / "Data.csv"
    if not target.exists():
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("src/cypack/data/Data.csv"))
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return target


def reference_venv() -> Path:
    env = OUT / "venv"
    python = env / "bin" / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
    # ChannelAttribution imports matplotlib at import time without declaring it.
    probe = subprocess.run([str(python), "-c", "import ChannelAttribution"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "numpy", "pandas", "matplotlib", f"ChannelAttribution=={VERSION}"], check=True)
    return python


def main() -> None:
    from journey_ml.attribution import markov_chain_from_paths, markov_removal_effects

    data_path = fetch_data()
    python = reference_venv()
    script = OUT / "reference.py"
    script.write_text(REFERENCE, encoding="utf-8")
    ref_run = subprocess.run([str(python), str(script), str(data_path)], capture_output=True, text=True, check=True)
    ref = json.loads(ref_run.stdout.strip().splitlines()[-1])
    ref_conv = dict(zip(ref["channels"], ref["conversions"], strict=True))

    data = pd.read_csv(data_path, sep=";")
    t = time.perf_counter()
    ours = markov_removal_effects(markov_chain_from_paths(data)).set_index("channel")
    our_s = time.perf_counter() - t
    rows = []
    for ch in sorted(ref_conv, key=lambda c: -ref_conv[c]):
        mine = float(ours["conversions"].get(ch, 0.0))
        rel = abs(mine - ref_conv[ch]) / ref_conv[ch] if ref_conv[ch] else float("nan")
        rows.append((ch, ref_conv[ch], mine, rel))
    worst = max(r[3] for r in rows)
    print("```markdown")
    print(f"## Markov removal effect vs ChannelAttribution {VERSION} markov_model(order=1) "
          f"({len(data)} paths, {int(data['total_conversions'].sum())} conversions)\n")
    print("| channel | ChannelAttribution | journey_ml | rel. diff |")
    print("|---|---:|---:|---:|")
    for ch, a, b, rel in rows:
        print(f"| {ch} | {a:,.1f} | {b:,.1f} | {100 * rel:.2f}% |")
    print(f"\nworst relative difference: {100 * worst:.2f}% (target < 2%): {'PASS' if worst < 0.02 else 'FAIL'}; "
          f"time: journey_ml {our_s * 1000:.0f} ms (closed form), ChannelAttribution {ref['seconds'] * 1000:.0f} ms")
    print("```")


if __name__ == "__main__":
    main()
