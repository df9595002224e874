"""score_corpus at its edges (issue 10): the destination and the options are checked before any
work, a failure that is not the documents' stops the run (keeping what finished), and a
document that cannot be scored is that document's error, not the run's."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

import lightlens
from lightlens.cli import main
from lightlens.corpus.journal import Journal, error_row, text_sha256
from lightlens.testing.mock_server import MockServer, word_scorer

TEXTS = [f"Document {i} has a few words in it." for i in range(6)]


def run(texts, model, out, **kw):
    return lightlens.score_corpus(texts, model=model, out=out, progress=False, **kw)


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if score_corpus gets as far as loading a model."""
    import lightlens.models.scorer as scorer

    monkeypatch.setattr(scorer, "get_model", lambda *a, **k: pytest.fail("the model was loaded before refusing"))


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".parts")) or "part-" in p.name)


# ---- §1: the destination, checked before the model loads -----------------------------------

def test_out_that_is_a_folder_is_refused_before_the_model_loads(tmp_path, no_model):
    out = tmp_path / "scores.parquet"
    out.mkdir()
    with pytest.raises(IsADirectoryError, match=r"is a folder: give a \.parquet file name, e\.g\. .*scores\.parquet"):
        run(TEXTS, str(tmp_path), out)
    assert leftovers(tmp_path) == [] and list(out.iterdir()) == []


@pytest.mark.parametrize("where, error, message", [
    ("a-file/scores.parquet", NotADirectoryError, "is a file, not a folder"),
    ("scores.parquet", NotADirectoryError, "is a file where the parts folder goes"),  # <out>.parts is a file
    ("scores.txt", ValueError, r"out must be a \.parquet file name"),
])
def test_an_unwritable_destination_is_refused_before_the_model_loads(tmp_path, no_model, where, error, message):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "scores.parquet.parts").write_text("not a folder either")
    with pytest.raises(error, match=message):
        run(TEXTS, str(tmp_path), tmp_path / where)


def test_a_read_only_folder_is_refused_before_the_model_loads(tmp_path, no_model, monkeypatch):
    import errno
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    real = tempfile.TemporaryFile

    def read_only_fs(*args, dir=None, **kw):  # what root meets on a read-only mount
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kw)

    if os.access(folder, os.W_OK):  # root writes into a 0555 folder: use a read-only file system instead
        monkeypatch.setattr(tempfile, "TemporaryFile", read_only_fs)
    try:
        with pytest.raises(PermissionError, match=r"cannot write in .*ro \(.*\): choose another out path"):
            run(TEXTS, str(tmp_path), folder / "scores.parquet")
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_a_failed_write_leaves_no_tmp_file_behind(tmp_path):
    journal = Journal(tmp_path / "m.parquet")
    journal.append([{**error_row("d", ValueError("x")), "text_sha256": text_sha256("x")}])
    journal.out.mkdir()  # becomes a folder during the run: the final rename fails
    with pytest.raises(OSError):
        journal.merge({"format": 1}, {"d": text_sha256("x")})
    assert not list(tmp_path.glob("*.tmp")) and list(journal.parts.glob("part-*.parquet"))  # parts kept


# ---- §1: options, checked before any work -------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"max_length": 1}, "max_length must be an int >= 2, got 1"),
    ({"top_k": 100000}, r"top_k must be an int in \[0, 64\], got 100000"),
    ({"top_k": True}, r"top_k must be an int in \[0, 64\], got True"),
    ({"bos": "yes"}, "bos must be None .* got 'yes'"),
    ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
    ({"docs_per_part": 0}, "docs_per_part must be an int >= 1, got 0"),
    ({"max_length": 4, "stride": 8}, "stride must be an int with 1 <= stride <= max_length"),
])
def test_invalid_options_are_refused_before_any_work(tmp_path, no_model, options, message):
    out = tmp_path / "scores.parquet"
    with pytest.raises(ValueError, match=message):
        run(TEXTS, str(tmp_path), out, **options)
    assert not out.exists() and not Journal(out).parts.exists()


def test_numpy_integers_are_options_too(tmp_path, tiny_gpt2):
    import numpy as np

    c = run(TEXTS[:2], tiny_gpt2, tmp_path / "s.parquet", top_k=np.int64(2), batch_size=np.int32(4))
    assert c.failed.empty and len(c.table) == 2


# ---- §1: a failure that is not the documents' stops the run ---------------------------------

def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_dead_server_stops_the_run_with_its_error(tmp_path):
    model = lightlens.remote.RemoteModel("vllm", _dead_url(), model_name="mock", retries=0, concurrency=2)
    out = tmp_path / "scores.parquet"
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"the first 2 documents all failed with the same error.*Connection refused"):
        run(TEXTS, model, out)
    assert time.perf_counter() - t0 < 30
    assert not out.exists() and not list(Journal(out).parts.glob("part-*.parquet"))  # no "failed" rows


def test_a_broken_model_stops_after_two_documents_without_retrying_the_batch(tmp_path, tiny_gpt2, monkeypatch):
    out = tmp_path / "scores.parquet"
    first = run(TEXTS[:3], tiny_gpt2, out)
    calls = []

    def broken(self, text, **kw):
        calls.append(text)
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(type(tiny_gpt2), "score", broken)
    with pytest.raises(RuntimeError, match="the first 2 documents all failed with the same error.*CUDA error"):
        run(TEXTS, tiny_gpt2, out, docs_per_part=3)
    assert len(calls) == 3  # the batch, then two documents alone: not the whole batch one by one
    monkeypatch.undo()
    assert lightlens.CorpusResult.load(out).perplexity == first.perplexity  # what finished is kept
    assert sorted(Journal(out).done_ids()) == ["0", "1", "2"]


def test_one_failing_document_in_the_first_batch_is_recorded_and_the_run_goes_on(tmp_path, tiny_gpt2, monkeypatch):
    bad = "The longest document, so it is first in the first batch, fails on its own."
    real = type(tiny_gpt2).score

    def picky(self, text, **kw):
        if bad in ([text] if isinstance(text, str) else text):
            raise ValueError("this document only")
        return real(self, text, **kw)

    monkeypatch.setattr(type(tiny_gpt2), "score", picky)
    c = run([bad, *TEXTS], tiny_gpt2, tmp_path / "scores.parquet", docs_per_part=4)
    assert c.failed["id"].tolist() == ["0"] and "this document only" in c.failed["error"].iloc[0]
    assert len(c.table) == 7


# ---- §4: a text that is not a str is that document's error ----------------------------------

def test_a_list_valued_text_is_that_documents_error(tmp_path, tiny_gpt2):
    source = tmp_path / "c.jsonl"
    rows = [{"id": "a", "text": TEXTS[0]}, {"id": "d", "text": ["x y", "z w"]}, {"id": "b", "text": TEXTS[1]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.parquet"
    for _ in range(2):  # and so does the rerun, which retries it
        c = run(source, tiny_gpt2, out)
        assert c.failed["id"].tolist() == ["d"]
        assert c.failed["error"].iloc[0].startswith("TypeError: a document's text must be a str, got list")
        assert c.table.set_index("id").loc[["a", "b"], "error"].isna().all()


# ---- the CLI: one line, non-zero ------------------------------------------------------------

@pytest.mark.parametrize("case", ["top_k", "max_length", "batch_size", "folder", "wrong server"])
def test_cli_corpus_refusals_are_one_line_and_non_zero(tmp_path, gpt2_dir, capsys, case):
    source = tmp_path / "c.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    (tmp_path / "folder.parquet").mkdir()
    args = {"top_k": ["--top-k", "100000"], "max_length": ["--max-length", "1"], "batch_size": ["--batch-size", "0"],
            "folder": ["--out", str(tmp_path / "folder.parquet")]}.get(case, [])
    with MockServer("vllm", word_scorer) as server:  # asked as if it were TGI: every answer has the wrong shape
        model = f"tgi+{server.url}" if case == "wrong server" else str(gpt2_dir)
        code = main(["corpus", str(source), "--model", model, "--out", str(tmp_path / "s.parquet"), *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lightlens: error:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "s.parquet").exists()


def test_a_single_document_that_fails_for_its_own_reason_is_recorded(tmp_path):
    """One document, a server that answers for another prompt: the document's failure, recorded."""
    with MockServer("vllm", word_scorer, always="other_prompt") as server:
        c = lightlens.score_corpus(["The cat sat on the mat."], model=f"vllm+{server.url}",
                                   out=tmp_path / "s.parquet", progress=False)
    assert c.failed["id"].tolist() == ["0"] and "RemoteResponseError" in c.failed["error"].iloc[0]
