"""Packaging: environment.yml mirrors pyproject, the version is one, CI runs the README's tests."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import lightlens

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower()


def _spec(req: str) -> str:
    return req.split(";")[0].replace(" ", "")[len(_name(req)):]


def test_environment_yml_lists_what_pyproject_lists():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): _spec(r) for r in project["dependencies"]}
    for extra in ("offline", "notebooks", "dev"):
        wanted.update({_name(r): _spec(r) for r in project["optional-dependencies"][extra]})
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = {}
    for dep in env["dependencies"]:
        for req in dep["pip"] if isinstance(dep, dict) else [dep]:
            if not req.startswith(("python", "pip", "-e")):
                listed[_name(req.replace("pytorch", "torch"))] = _spec(req.replace("pytorch", "torch"))
    assert listed == wanted


def test_version_is_single_sourced():
    from importlib.metadata import version

    assert lightlens.__version__ == version("lightlens")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^\s*make test\b", ci, re.M)


def test_bench_entry_point_runs_the_checkout_benchmarks(capsys, monkeypatch, tmp_path):
    """``python -m lightlens.bench`` (the issues' name) dispatches to the checkout's benchmarks,
    and says what to do where there is no checkout."""
    from lightlens import bench

    assert bench._benchmarks_folder(ROOT) == ROOT
    with pytest.raises(SystemExit) as done:
        bench.main(["divergence", "--help"])
    assert done.value.code == 0 and "--tokens" in capsys.readouterr().out
    monkeypatch.setattr(bench, "_benchmarks_folder", lambda start: None)
    assert bench.main(["cpu"]) == 2 and "source checkout" in capsys.readouterr().err
