"""The installed package is whole: build the wheel from this checkout, install it (not editable)
into a fresh venv, and use it from outside the checkout: scoring, servers, kernels and the CLI."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Run by the new venv's python from outside the checkout; argv[1] is a tiny model folder.
CHECKS = """
import sys
from pathlib import Path

import lightlens, lightlens.kernels, lightlens.remote, torch
from lightlens.testing import MockServer, word_scorer

for mod in (lightlens, lightlens.kernels, lightlens.remote):
    assert Path(mod.__file__).is_relative_to(sys.prefix), mod.__file__  # the wheel's copy, not the checkout
r = lightlens.score("Hello world, hello again.", model=sys.argv[1])
assert r.perplexity > 1 and len(r.tokens) > 3
with MockServer("vllm", word_scorer) as server:
    assert lightlens.score("Hello there", model=f"vllm+{server.url}").tokens == ["Hello", " there"]
stats = lightlens.kernels.token_stats(torch.zeros(2, 4), torch.tensor([0, 1]))
assert stats.rank.tolist() == [1, 1]
print("ok", lightlens.__file__)
"""


def _packages(folder: str) -> set[str]:
    """Every package directory (one with an __init__.py) under ``folder``, as paths in the wheel."""
    dirs = {p.parent.relative_to(ROOT) for p in (ROOT / folder).rglob("__init__.py")}
    return {str(Path("lightlens/kernels", *d.parts[1:]) if folder == "kernels" else d) for d in dirs}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (so no build/ or egg-info lands in it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = shutil.copytree(ROOT, tmp / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "test-output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, text=True)
    (built,) = (tmp / "dist").glob("lightlens-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (--no-deps); the dependencies are this interpreter's."""
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env)], check=True)
    purelib = subprocess.run([env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Plain paths in a .pth are appended after the venv's own site-packages and their own .pth files
    # are not run, so the checkout's editable install stays out while torch & co. are found.
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, text=True)
    return env


def test_wheel_has_every_package_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    dirs = {str(Path(n).parent) for n in names}
    missing = (_packages("lightlens") | _packages("kernels")) - dirs
    assert not missing, f"packages left out of the wheel: {sorted(missing)}"
    assert "lightlens/kernels/__init__.py" in names
    strays = [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "kernels", "notebooks")]
    assert not strays, strays


def test_installed_wheel_scores_serves_and_runs_the_cli(venv, gpt2_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", LIGHTLENS_CACHE=str(tmp_path / "cache"))
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    checks = subprocess.run([venv / "bin" / "python", "-I", "-c", CHECKS, str(gpt2_dir)], **run)
    assert checks.returncode == 0, checks.stderr[-3000:]
    assert checks.stdout.startswith("ok " + str(venv)), checks.stdout
    cli = subprocess.run([venv / "bin" / "lightlens", "score", "Hello world, hello again.", "--model", str(gpt2_dir)],
                         **run)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "logprob" in cli.stdout and "perplexity" in cli.stdout and "world" in cli.stdout
