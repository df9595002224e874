"""ScoreResult: derived numbers, tables, saving and loading (also without torch)."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lightlens
from lightlens import ScoreResult

TEXT = "Café — the cat sat.\nOn the mat 😀."


@pytest.fixture(scope="module")
def result(tiny_gpt2):
    return lightlens.score(TEXT, model=tiny_gpt2, top_k=4)


def test_derived_numbers_follow_design(result):
    # The same float32 logprobs, summed in float64 here and in lightlens: only the order of a few
    # dozen float64 additions may differ (~1e-15 relative), so 1e-9 holds on any CPU.
    lp = result.logprobs[1:].astype(np.float64)
    assert result.num_scored == len(result) - 1
    assert result.nll == pytest.approx(-lp.mean(), rel=1e-9)
    assert result.perplexity == pytest.approx(math.exp(-lp.mean()), rel=1e-9)
    scored_text = TEXT[result.offsets[1, 0]:]
    assert result.bits_per_byte == pytest.approx(-lp.sum() / math.log(2) / len(scored_text.encode()), rel=1e-9)
    assert result.word_perplexity == pytest.approx(math.exp(-lp.sum() / len(scored_text.split())), rel=1e-9)
    # surprisal_bits is one float32 division: one rounding, 6e-8 relative
    np.testing.assert_allclose(result.surprisal_bits[1:], -lp / math.log(2), rtol=1e-6)


def test_to_pandas_one_row_per_token(result):
    df = result.to_pandas()
    assert len(df) == len(result) and "".join(df.token) == TEXT
    assert list(df.columns[:5]) == ["token", "token_id", "start", "end", "logprob"]
    assert df.logprob.isna().sum() == 1 and len(df.top_k_tokens[3]) == 4


def test_repr_and_table_are_readable(result):
    assert repr(result).startswith("ScoreResult(model='tiny-gpt2")
    assert "perplexity=" in repr(result)
    table = result.table()
    assert "\\n" in table and "logprob" in table and len(table.splitlines()) == len(result) + 1


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_save_load_roundtrip(result, tmp_path, suffix):
    path = result.save(tmp_path / f"r{suffix}")
    back = ScoreResult.load(path)
    assert back.text == result.text and back.tokens == result.tokens
    assert back.top_k_tokens == result.top_k_tokens and back.model == result.model
    assert back.window == result.window and back.bos == result.bos
    for name in ("token_ids", "offsets", "ranks", "top_k_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    for name in ("logprobs", "entropy", "top_k_logprobs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))  # NaN == NaN here
    assert back.perplexity == result.perplexity


def test_save_refuses_unknown_format(result, tmp_path):
    with pytest.raises(ValueError, match=".json or .parquet"):
        result.save(tmp_path / "r.pkl")
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a lightlens"):
        ScoreResult.load(tmp_path / "x.json")


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_result_loads_and_prints_without_torch(result, tmp_path, suffix):
    path = result.save(tmp_path / f"r{suffix}")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import lightlens
        r = lightlens.ScoreResult.load({str(path)!r})
        print(repr(r)); print(r.table(max_rows=3)); print(len(r.to_pandas()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ScoreResult(" in out.stdout and str(len(result)) in out.stdout
