"""score_corpus: sources, per-document rows, failures, resuming after a real kill, torchrun."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lightlens
from lightlens.text.documents import read_documents
from lightlens.corpus.journal import Journal
from lightlens.testing.mock_server import MockServer, word_scorer

from conftest import CORPUS

TEXTS = list(dict.fromkeys(CORPUS))  # the six distinct texts
ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sources_give_ids_and_texts(tmp_path):
    import datasets
    import pandas as pd

    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)]
    expected = [(r["id"], r["text"]) for r in rows]
    assert read_documents(write_jsonl(tmp_path / "c.jsonl", rows)) == expected
    assert read_documents(rows) == expected
    assert read_documents(pd.DataFrame(rows)) == expected
    assert read_documents(pd.Series(TEXTS, index=[r["id"] for r in rows])) == expected
    assert read_documents(datasets.Dataset.from_list(rows)) == expected
    assert read_documents(datasets.Dataset.from_dict({"text": TEXTS}))[1] == ("1", TEXTS[1])
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text("first")
    (tmp_path / "dir" / "sub" / "b.txt").write_text("second")
    assert read_documents(tmp_path / "dir") == [("a.txt", "first"), ("sub/b.txt", "second")]
    with pytest.raises(ValueError, match="unique"):
        read_documents([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(ValueError, match="text_field"):
        read_documents([{"body": "a"}])
    with pytest.raises(FileNotFoundError):
        read_documents(tmp_path / "missing.jsonl")


def test_rows_match_scoring_each_document(tmp_path, tiny_gpt2):
    texts = TEXTS + ["", TEXTS[0] * 3]
    c = lightlens.score_corpus(texts, model=tiny_gpt2, out=tmp_path / "s.parquet", docs_per_part=3, progress=False)
    assert list(c.table["id"]) == [str(i) for i in range(len(texts))]
    assert c.failed["id"].tolist() == ["6"] and "empty text" in c.failed["error"].iloc[0]
    oracle = lightlens.CorpusResult.from_results([tiny_gpt2.score(t) for t in texts if t])
    assert c.num_tokens == oracle.num_tokens and c.num_scored == oracle.num_scored
    assert c.perplexity == pytest.approx(oracle.perplexity, rel=1e-5)
    assert c.bits_per_byte == pytest.approx(oracle.bits_per_byte, rel=1e-5)
    row = c.table.iloc[7]
    one = tiny_gpt2.score(texts[7])
    np.testing.assert_allclose(np.array(row["logprobs"], dtype=float), one.logprobs, rtol=1e-5, atol=1e-5)
    assert list(row["token_ids"]) == one.token_ids.tolist()
    assert not (tmp_path / "s.parquet.parts").exists()  # merged, parts removed
    again = lightlens.CorpusResult.load(tmp_path / "s.parquet")
    assert again.perplexity == c.perplexity and "failed=1" in repr(again)


def test_rerun_scores_only_what_is_missing_and_retries_failures(tmp_path):
    texts = [f"Document {i} has some words in it." for i in range(40)]
    out = tmp_path / "r.parquet"
    with MockServer("vllm", word_scorer, faults=["other_prompt"]) as server:
        model = lightlens.remote.RemoteModel("vllm", server.url, model_name="mock", concurrency=1)
        first = lightlens.score_corpus(texts, model=model, out=out, progress=False)
        assert len(first.failed) == 1 and len(server.requests) == 40
        second = lightlens.score_corpus(texts, model=model, out=out, progress=False)
        assert len(server.requests) == 41  # only the failed document again
    assert len(second.failed) == 0 and len(second.table) == 40
    assert second.num_scored == sum(len(t.split()) - 1 for t in texts)


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    texts = {f"doc-{i:03d}": f"Text number {i} " + "word " * (i % 17) for i in range(300)}
    source = write_jsonl(tmp_path / "c.jsonl", [{"id": k, "text": v} for k, v in texts.items()])
    out = tmp_path / "scores.parquet"
    with MockServer("vllm", word_scorer, delay=0.05) as server:
        cmd = [sys.executable, "-m", "lightlens", "corpus", str(source), "--out", str(out),
               "--model", f"vllm+{server.url}?model=mock"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        parts = Journal(out).parts
        deadline = time.time() + 60
        while not (parts.exists() and list(parts.glob("part-*.parquet"))) and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        done = Journal(out).done_ids()
        assert 0 < len(done) < len(texts)
        before = len(server.requests)
        rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        asked = [body["prompt"] for body, _ in server.requests[before:]]
    assert len(asked) == len(texts) - len(done)  # nothing scored twice
    assert not {texts[i] for i in done} & set(asked)
    final = lightlens.CorpusResult.load(out)
    assert sorted(final.table["id"]) == sorted(texts) and final.table["id"].is_unique
    assert final.failed.empty
    assert final.num_scored == sum(len(word_scorer(t).logprobs) - 1 for t in texts.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LATE_RANK = """
import os, sys, time
from pathlib import Path

parts = Path(sys.argv[1])
if os.environ["RANK"] == "1":  # start only once rank 0 has begun the job or written a part
    deadline = time.time() + 120
    while not ((parts / "job.json").exists() or list(parts.glob("part-*.parquet"))) and time.time() < deadline:
        time.sleep(0.02)
from lightlens.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path, llama_dir):
    """Rank 1 starts late (after rank 0 began, as after a slow model load): both still work on
    rank 0's to-do list, and every document is scored exactly once."""
    rows = [{"id": f"d{i}", "text": t * (1 + i % 3)} for i, t in enumerate(CORPUS[:24])]
    source = write_jsonl(tmp_path / "c.jsonl", rows)
    single = lightlens.score_corpus(source, model=llama_dir, out=tmp_path / "one.parquet", progress=False)
    (tmp_path / "late.py").write_text(LATE_RANK)
    out = tmp_path / "two.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(tmp_path / "late.py"), str(Journal(out).parts),
           "corpus", str(source), "--model", str(llama_dir), "--out", str(out), "--json"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0" in run.stderr and "rank 1" in run.stderr  # two workers, each with its shard
    merged = lightlens.CorpusResult.load(out)
    assert list(merged.table["id"]) == list(single.table["id"])
    for a, b in zip(single.table["logprobs"], merged.table["logprobs"]):
        np.testing.assert_allclose(np.array(a, float), np.array(b, float), rtol=1e-5, atol=1e-5)
    assert merged.perplexity == pytest.approx(single.perplexity, rel=1e-6)
    assert json.loads(run.stdout.strip().splitlines()[-1])["num_documents"] == len(rows)


def test_merge_with_a_missing_document_raises_and_keeps_the_parts(tmp_path, tiny_gpt2):
    from lightlens.corpus.journal import result_row, text_sha256

    journal = Journal(tmp_path / "m.parquet")
    r = tiny_gpt2.score(TEXTS[0])
    journal.append([{**result_row("a", r), "text_sha256": text_sha256(TEXTS[0])}])
    hashes = {"a": text_sha256(TEXTS[0]), "b": text_sha256(TEXTS[1])}
    with pytest.raises(RuntimeError, match=r"1 documents have no row after the run \(ids b\)"):
        journal.merge({"format": 1}, hashes)
    assert list(journal.parts.glob("part-*.parquet")) and not journal.out.exists()
    assert journal.merge({"format": 1}, {"a": hashes["a"]}).num_rows == 1


def test_done_ids_reads_only_the_id_error_and_hash_columns(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    texts = [f"Document {i} has some words in it." for i in range(5)]
    with MockServer("vllm", word_scorer) as server:
        model = lightlens.remote.RemoteModel("vllm", server.url, model_name="mock", concurrency=1)
        lightlens.score_corpus(texts, model=model, out=tmp_path / "r.parquet", progress=False)
    asked = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda f, **kw: asked.append(kw.get("columns")) or real(f, **kw))
    assert sorted(Journal(tmp_path / "r.parquet").done_ids()) == [str(i) for i in range(5)]
    assert asked == [["id", "error", "text_sha256"]]


@pytest.mark.slow
def test_torchrun_rank0_refusal_reaches_every_rank(tmp_path, llama_dir):
    """When rank 0 refuses the job (here: `out` is someone else's file), every rank stops with
    that reason on one line and nothing waits for a barrier that never comes."""
    import pandas as pd

    source = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": TEXTS[0]}, {"id": "b", "text": TEXTS[1]}])
    out = tmp_path / "theirs.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "-m", "lightlens", "corpus", str(source), "--model", str(llama_dir),
           "--out", str(out)]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode != 0
    assert run.stderr.count("not a lightlens corpus run") >= 2, run.stderr[-3000:]  # rank 0 and rank 1
    assert pd.read_parquet(out).columns.tolist() == ["a"]  # their file is untouched
