"""score_corpus resumes only the same job: same model, tokenizer, options and texts, else it
says what differs (before scoring anything) and how to start over."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

import lightlens
from lightlens.corpus.journal import Journal

TEXT_A = "The cat sat on the mat and looked at the door."
TEXT_B = "A completely different sentence about rivers, boats and the sea."


def run(texts, model, out, **kw):
    return lightlens.score_corpus(texts, model=model, out=out, progress=False, **kw)


def test_another_corpus_at_the_same_out_is_refused_until_overwrite(tmp_path, tiny_gpt2):
    out = tmp_path / "scores.parquet"
    first = run([TEXT_A], tiny_gpt2, out)
    with pytest.raises(ValueError, match=r"1 document changed text since the earlier run: ids 0.*overwrite=True"):
        run([TEXT_B], tiny_gpt2, out)
    assert lightlens.CorpusResult.load(out).perplexity == first.perplexity  # left as it was
    second = run([TEXT_B], tiny_gpt2, out, overwrite=True)
    assert second.perplexity == pytest.approx(lightlens.score(TEXT_B, model=tiny_gpt2).perplexity, rel=1e-6)
    assert second.perplexity != pytest.approx(first.perplexity, rel=1e-3)
    assert list(second.table["id"]) == ["0"] and not Journal(out).parts.exists()


def test_changed_text_of_one_id_is_refused_before_scoring(tmp_path, tiny_gpt2, monkeypatch):
    out = tmp_path / "scores.parquet"
    texts = [TEXT_A, TEXT_B, TEXT_A + " Again."]
    run(texts, tiny_gpt2, out)
    before = out.read_bytes()
    monkeypatch.setattr(type(tiny_gpt2), "score", lambda *a, **k: pytest.fail("scored before refusing"))
    with pytest.raises(ValueError, match="1 document changed text since the earlier run: ids 1"):
        run([TEXT_A, TEXT_B + "!", TEXT_A + " Again.", "a new document"], tiny_gpt2, out)
    assert out.read_bytes() == before and not Journal(out).parts.exists()


def test_another_model_or_options_is_refused_naming_the_difference(tmp_path, tiny_gpt2, tiny_llama):
    out = tmp_path / "scores.parquet"
    run([TEXT_A, TEXT_B], tiny_gpt2, out)
    with pytest.raises(ValueError, match=r"model\.name differs: '.*' \(earlier run\) vs '.*' \(this run\)"):
        run([TEXT_A, TEXT_B], tiny_llama, out)
    with pytest.raises(ValueError, match=r"options\.max_length differs: None \(earlier run\) vs 16 \(this run\)"):
        run([TEXT_A, TEXT_B], tiny_gpt2, out, max_length=16)
    job = json.loads(pq.read_schema(out).metadata[b"lightlens.job"])  # the job is stored with the output
    assert job["model"]["weights"] and job["tokenizer"]["vocab_size"] == len(tiny_gpt2.tokenizer)


def test_an_unrelated_parquet_at_out_is_refused_until_overwrite(tmp_path, tiny_gpt2):
    out = tmp_path / "scores.parquet"
    pd.DataFrame({"id": ["0"], "x": [1.0]}).to_parquet(out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="is not a lightlens corpus run.*overwrite=True"):
        run([TEXT_A], tiny_gpt2, out)
    assert out.read_bytes() == before
    c = run([TEXT_A], tiny_gpt2, out, overwrite=True)
    assert c.perplexity == pytest.approx(tiny_gpt2.score(TEXT_A).perplexity, rel=1e-6)


def test_the_same_job_resumes_with_overwrite_too(tmp_path, tiny_gpt2, monkeypatch):
    out = tmp_path / "scores.parquet"
    first = run([TEXT_A], tiny_gpt2, out)
    monkeypatch.setattr(type(tiny_gpt2), "score", lambda *a, **k: pytest.fail("scored again"))
    again = run([TEXT_A], tiny_gpt2, out, overwrite=True)  # nothing to discard: resumes
    assert again.perplexity == first.perplexity


def test_an_unrelated_parquet_with_id_and_error_columns_is_refused(tmp_path, tiny_gpt2):
    """Its ids must not count as done (they would come back as NaN rows): no job record, not ours."""
    from lightlens.corpus.journal import text_sha256

    out = tmp_path / "scores.parquet"
    pd.DataFrame({"id": ["0", "1"], "error": [None, None], "text_sha256": [text_sha256(TEXT_A), text_sha256(TEXT_B)],
                  "perplexity": [1.0, 2.0]}).to_parquet(out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="is not a lightlens corpus run.*overwrite=True"):
        run([TEXT_A, TEXT_B], tiny_gpt2, out)
    assert out.read_bytes() == before and not Journal(out).parts.exists()
