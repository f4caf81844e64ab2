"""The package works when installed: shipped maps and config come from the package, not the repo.

The slow tests build the wheel from a copy of the source tree, install it into a fresh venv
without the editable checkout and run ``simulate -> validate -> train -> score`` from a
directory outside the repository. To keep that quick the fresh venv gets no dependencies of
its own: a ``.pth`` line puts this venv's site-packages on its path (a path line does not
run that directory's own ``.pth`` files, so the checkout's editable finder stays inactive,
and the test checks that ``journey_ml`` is imported from the fresh venv). An editable
install of the copy is checked too: it must read ``pipelines/`` in place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_ml.cli import app
from journey_ml.contract import DEFAULT_JOURNEY_MAP, JourneyMap, TrainConfig, shipped
from journey_ml.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
REPO_MAPS = sorted(p.stem for p in (PIPELINES / "journey_maps").glob("*.yaml"))


# ---------------------------------------------------------------------------- in-process (quick)
def test_every_subpackage_is_packaged() -> None:
    """pyproject lists packages explicitly (the pipelines/ mapping needs it): none may be missing."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    src = ROOT / "src"
    found = {
        ".".join(init.parent.relative_to(src).parts)
        for init in src.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= set(config["packages"]), f"add {sorted(found - set(config['packages']))} to [tool.setuptools] packages"
    assert config["package-dir"]["journey_ml.pipelines"] == "pipelines"
    assert {"journey_ml.pipelines", "journey_ml.pipelines.journey_maps"} <= set(config["packages"])


def test_shipped_maps_are_the_pipelines_directory() -> None:
    assert list(shipped.journey_map_names()) == REPO_MAPS
    assert "ecommerce" in REPO_MAPS and "cdnow" in REPO_MAPS
    assert DEFAULT_JOURNEY_MAP.read_bytes() == (PIPELINES / "journey_maps" / "ecommerce.yaml").read_bytes()
    assert shipped.train_config_path().read_bytes() == (PIPELINES / "train.yaml").read_bytes()
    for name in REPO_MAPS:
        JourneyMap.from_yaml(name)  # every shipped map is valid and loads by name


def test_a_map_by_name_file_or_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert JourneyMap.from_yaml("cdnow") == JourneyMap.from_yaml(PIPELINES / "journey_maps" / "cdnow.yaml")
    assert JourneyMap.from_yaml("cdnow.yaml").name == "cdnow"
    # An existing file wins over a shipped name.
    Path("cdnow").write_text("name: mine\nstages: [{name: a, events: [x]}]\n", encoding="utf-8")
    assert JourneyMap.from_yaml("cdnow").name == "mine"
    for bad in ("cdnwo", "maps/cdnow.yaml", "pipelines/journey_maps/ecommerce.yaml"):
        with pytest.raises(ConfigError) as info:
            JourneyMap.from_yaml(bad)
        assert "not found" in str(info.value) and bad in str(info.value)
        assert ", ".join(REPO_MAPS) in str(info.value)


def test_default_train_config_resolves_outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig.from_yaml(shipped.train_config_path())
    assert JourneyMap.from_yaml(cfg.journey_map) == JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    assert JourneyMap.from_yaml(TrainConfig().journey_map) == JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP)
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "none.csv"), "--journey-map", "nosuch"])
    assert result.exit_code == 2
    assert "nosuch" in result.output and "cdnow" in result.output


# ---------------------------------------------------------------------------- installed (slow)
@dataclass
class Tree:
    """A copy of the buildable source tree and the wheel built from it."""

    root: Path
    wheel: Path


def run(args: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """Copy what the build reads (never build inside the shared checkout) and build the wheel."""
    base = tmp_path_factory.mktemp("wheel")
    root = base / "journey_ml-src"
    root.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "pipelines"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    dist = base / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, root], cwd=base)
    (wheel,) = dist.glob("journey_ml-*.whl")
    return Tree(root, wheel)


def fresh_venv(where: Path) -> tuple[Path, dict[str, str]]:
    """A venv without pip whose only third-party path is this venv's site-packages (.pth line)."""
    run([sys.executable, "-m", "venv", "--without-pip", where], cwd=where.parent)
    python = where / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=where).stdout.strip())
    (purelib / "_journey_ml_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{where / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", VIRTUAL_ENV=str(where))
    return python, env


PROBE = """
import json, journey_ml, journey_ml.contract as c, journey_ml.contract.shipped as s
print(json.dumps({"package": journey_ml.__file__, "map": str(c.DEFAULT_JOURNEY_MAP),
                  "config": str(s.train_config_path()), "names": list(s.journey_map_names())}))
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_wheel_ships_every_map_and_the_config(tree: Tree) -> None:
    with zipfile.ZipFile(tree.wheel) as whl:
        names = set(whl.namelist())
        for stem in REPO_MAPS:
            member = f"journey_ml/pipelines/journey_maps/{stem}.yaml"
            assert member in names, f"{member} missing from {tree.wheel.name}"
            assert whl.read(member) == (PIPELINES / "journey_maps" / f"{stem}.yaml").read_bytes()
        assert whl.read("journey_ml/pipelines/train.yaml") == (PIPELINES / "train.yaml").read_bytes()
        assert "journey_ml/py.typed" in names
        assert not [n for n in names if n.startswith(("pipelines/", "src/"))]


@pytest.mark.slow
@pytest.mark.e2e
def test_installed_wheel_runs_outside_the_repository(tree: Tree, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python, env = fresh_venv(venv)
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", tree.wheel], cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    probe = json.loads(run([python, "-c", PROBE], cwd=work, env=env).stdout)
    for key in ("package", "map", "config"):
        assert Path(probe[key]).is_relative_to(venv), f"{key} resolved to {probe[key]}, outside the fresh venv"
    assert probe["names"] == REPO_MAPS

    cli = venv / "bin" / "journey-ml"
    uri = f"sqlite:///{work / 'mlflow.db'}"
    run([cli, "simulate", "--customers", "4000", "--days", "120", "--seed", "3", "--out", "events.parquet", "--no-truth", "--json"], cwd=work, env=env)
    checked = json.loads(run([cli, "validate", "events.parquet", "--json"], cwd=work, env=env).stdout)
    assert checked["rows_ok"] > 0 and checked["rows_in"] == checked["rows_ok"] + checked["rows_rejected"]
    trained = json.loads(
        run(
            [cli, "train", "events.parquet", "--trials", "1", "--tracking-uri", uri, "--out", "models", "--json",
             "--set", "model.n_estimators=60", "--set", "anchors.enabled=false"],
            cwd=work, env=env,
        ).stdout
    )  # fmt: skip
    assert trained["promoted"] is True
    bundle = work / trained["bundle_path"]  # relative paths are the working directory's
    assert (bundle / "journey_map.yaml").is_file() and bundle.resolve().is_relative_to(work.resolve())
    scored = json.loads(
        run([cli, "score", "events.parquet", "--model", "models:/journey-ml@champion", "--tracking-uri", uri, "--out", "scores.csv", "--json"], cwd=work, env=env).stdout
    )
    scores = pd.read_csv(work / "scores.csv", dtype={"customer_id": "str"})
    assert scored["customers"] == len(scores) > 0
    stages = JourneyMap.from_yaml(DEFAULT_JOURNEY_MAP).stage_names
    assert [f"p_{s}" for s in stages] == [c for c in scores.columns if c.startswith("p_")]
    assert scores["drop_off_risk"].between(0, 1).all()

    # The real BentoML server from the installed package (no service/ directory here).
    served = json.loads(run([python, "-c", SERVE_PROBE, str(bundle)], cwd=work, env=env, timeout=240).stdout)
    assert served["status"] == 200 and served["package"].startswith(str(venv))
    assert served["response"]["customers"][0]["status"] in ("scored", "inactive", "exited")


SERVE_PROBE = """
import json, sys
import pandas as pd
import journey_ml
from journey_ml.serving import demo_request
events = pd.read_parquet("events.parquet")
out = demo_request(sys.argv[1], events[events["customer_id"] == events["customer_id"].iloc[0]])
print(json.dumps({"status": out["status"], "response": out["response"], "package": journey_ml.__file__}))
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_editable_install_reads_pipelines_in_place(tree: Tree, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python, env = fresh_venv(venv)
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", "-e", tree.root], cwd=tmp_path)
    probe = json.loads(run([python, "-c", PROBE], cwd=tmp_path, env=env).stdout)
    assert Path(probe["package"]) == tree.root / "src" / "journey_ml" / "__init__.py"
    assert Path(probe["map"]) == tree.root / "pipelines" / "journey_maps" / "ecommerce.yaml"
    assert Path(probe["config"]) == tree.root / "pipelines" / "train.yaml"
    # A map added to pipelines/ is shipped at once: no reinstall, no second copy.
    shutil.copy2(PIPELINES / "journey_maps" / "cdnow.yaml", tree.root / "pipelines" / "journey_maps" / "zz_added.yaml")
    try:
        probe = json.loads(run([python, "-c", PROBE], cwd=tmp_path, env=env).stdout)
        assert probe["names"] == [*REPO_MAPS, "zz_added"]
        loaded = run([python, "-c", "from journey_ml.contract import JourneyMap; print(JourneyMap.from_yaml('zz_added').name)"], cwd=tmp_path, env=env)
        assert loaded.stdout.strip() == "cdnow"
    finally:
        (tree.root / "pipelines" / "journey_maps" / "zz_added.yaml").unlink()
