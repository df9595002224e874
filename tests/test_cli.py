"""The `lightlens` command, run as a user would (a subprocess)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import lightlens


def run(*args, input=None):
    return subprocess.run([sys.executable, "-m", "lightlens", *args], capture_output=True,
                          text=True, input=input, timeout=300)


def test_help_explains_commands():
    out = run("--help")
    assert out.returncode == 0
    for word in ("score", "perplexity", "download", "LIGHTLENS_MODEL", "examples"):
        assert word in out.stdout
    sub = run("perplexity", "--help")
    assert "--max-length" in sub.stdout and "--stride" in sub.stdout


def test_score_json_equals_library(gpt2_dir):
    text = "Hello world! Hello again, world."
    out = run("score", text, "--model", str(gpt2_dir), "--json", "--top-k", "2")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    r = lightlens.ScoreResult.from_dict(d)
    want = lightlens.score(text, model=gpt2_dir, top_k=2)
    assert r.tokens == want.tokens and r.perplexity == pytest.approx(want.perplexity, rel=1e-6)


def test_score_table_from_stdin(gpt2_dir):
    out = run("score", "-f", "-", "--model", str(gpt2_dir), input="The cat sat.\nOn the mat.")
    assert out.returncode == 0, out.stderr
    assert "logprob" in out.stdout and "perplexity" in out.stdout


def test_perplexity_json_with_progress(gpt2_dir, tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("The quick brown fox jumps over the lazy dog. " * 20)
    out = run("perplexity", str(f), "--model", str(gpt2_dir), "--max-length", "32", "--stride", "16", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    want = lightlens.perplexity(f, model=gpt2_dir, max_length=32, stride=16, progress=False)
    assert s["perplexity"] == pytest.approx(want.perplexity, rel=1e-6) and s["num_tokens"] == want.num_tokens
    assert "tok" in out.stderr  # the tqdm progress bar


@pytest.mark.parametrize("args,match", [
    (("score", ""), "empty"),
    (("score",), "one of the two"),
    (("perplexity", "nope.txt"), "no file"),
])
def test_errors_exit_nonzero_with_a_message(gpt2_dir, args, match):
    out = run(*args, "--model", str(gpt2_dir))
    assert out.returncode == 1 and match in out.stderr and "Traceback" not in out.stderr
