"""The one corpus reader (lightlens.text.documents): a source means the same to perplexity()
and score_corpus(), and a path that names nothing is an error, never a one-word corpus."""
from __future__ import annotations

import subprocess
import sys

import pytest

import lightlens
from lightlens.text.documents import read_documents


@pytest.mark.parametrize("source", ["data/corpus", "missing.jsonl", "./notes", "~/nowhere/at_all.txt"])
def test_a_missing_path_is_an_error_for_both_entry_points(source, tiny_gpt2, tmp_path):
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        lightlens.perplexity(source, model=tiny_gpt2, progress=False)
    with pytest.raises(FileNotFoundError, match="no file or folder"):
        lightlens.score_corpus(source, model=tiny_gpt2, out=tmp_path / "s.parquet", progress=False)
    assert not (tmp_path / "s.parquet").exists()


def test_a_text_is_one_document_for_both_entry_points(tiny_gpt2, tmp_path):
    text = "Hello world! Hello again, world. And/or more."
    assert read_documents(text) == [("0", text)]
    a = lightlens.perplexity(text, model=tiny_gpt2, progress=False)
    b = lightlens.score_corpus(text, model=tiny_gpt2, out=tmp_path / "s.parquet", progress=False)
    assert a.num_documents == b.num_documents == 1
    assert a.perplexity == pytest.approx(b.perplexity, rel=1e-6)  # same machine, same arithmetic
    assert a.perplexity == pytest.approx(tiny_gpt2.score(text).perplexity, rel=1e-6)


def test_an_existing_file_is_read(tiny_gpt2, tmp_path):
    f = tmp_path / "doc"
    f.write_text("Hello world! Hello again.")
    assert read_documents(str(f)) == [("doc", "Hello world! Hello again.")]


def test_the_cli_reads_a_path_never_a_text(gpt2_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "lightlens", "corpus", "corpus", "--model", str(gpt2_dir),
                          "--out", str(tmp_path / "s.parquet")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "no file or folder" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "s.parquet").exists()


def test_a_list_of_results_points_to_from_results(tiny_gpt2):
    with pytest.raises(TypeError, match="from_results"):
        lightlens.CorpusResult([tiny_gpt2.score("Hello world")])


def test_read_text_names_a_missing_file_or_a_folder(tmp_path):
    import pytest

    from lightlens.text.documents import read_text

    with pytest.raises(FileNotFoundError, match="no file at .*missing.txt: check the path"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="a folder, not a file"):
        read_text(tmp_path)
