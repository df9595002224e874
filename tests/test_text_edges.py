"""Text is scored exactly as it is (issue 10, §3): files keep their line ends, JSONL texts keep
their Unicode line separators, and text that is not Unicode is a clear error, never a crash."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

import lightlens
from lightlens.testing import MockServer, word_scorer
from lightlens.text.documents import read_documents, read_text

CRLF = "first line\r\nsecond line\r\nold Mac\rend\r\n"


def test_a_txt_file_keeps_its_crlf(tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(CRLF.encode())
    assert read_text(f) == CRLF
    assert read_documents(str(f)) == [("f.txt", CRLF)]


def test_a_folder_keeps_its_crlf(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes(CRLF.encode())
    assert read_documents(tmp_path) == [("sub/a.txt", CRLF)]


def test_perplexity_scores_the_file_bytes(tiny_gpt2, tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(CRLF.encode())
    c = lightlens.perplexity(f, model=tiny_gpt2, progress=False)
    (doc,) = c.documents
    assert doc.text == CRLF and "".join(doc.tokens) == CRLF  # offsets index the file
    assert c.perplexity == pytest.approx(tiny_gpt2.score(CRLF).perplexity, rel=1e-6)


@pytest.mark.parametrize("name, data, at", [("bad.txt", b"caf\xc3\xa9 \xff!", 6),
                                           ("bad.jsonl", b'{"text": "ok \xff"}\n', 13)])
def test_invalid_utf8_names_the_file_and_byte(tmp_path, name, data, at):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=rf"{name}: not valid UTF-8 at byte {at}\b"):
        read_documents(tmp_path / name)


def test_jsonl_texts_keep_unicode_line_separators(tmp_path):
    texts = ["a\u2028b", "c\u0085d", "e\u2029f\x0cg", "crlf\r\ninside"]
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(texts)), encoding="utf-8", newline="")
    assert [t for _, t in read_documents(f)] == texts


def test_a_crlf_jsonl_file_reads(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_bytes(b'{"id": "a", "text": "x\xe2\x80\xa8y"}\r\n\r\n{"id": "b", "text": "z"}\r\n')
    assert read_documents(f) == [("a", "x\u2028y"), ("b", "z")]


def test_a_bad_jsonl_line_is_numbered_by_newlines(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"text": "a\u2028b"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.jsonl:2: not valid JSON"):
        read_documents(f)


def test_mock_server_answers_a_lone_surrogate_with_400():
    body = json.dumps({"prompt": "bad \ud800 text", "prompt_logprobs": 1}).encode()  # ASCII: \ud800 escaped
    with MockServer("vllm", word_scorer) as server:
        req = urllib.request.Request(f"{server.url}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400
        message = json.loads(err.value.read())["message"]
        assert "U+D800" in message and "character 4" in message
        ok = urllib.request.Request(f"{server.url}/v1/completions", data=json.dumps({"prompt": "Hi there"}).encode())
        with urllib.request.urlopen(ok, timeout=10) as answer:  # and it keeps serving
            assert answer.status == 200


def test_mock_server_answers_a_body_that_is_not_json_with_400():
    with MockServer("tgi", word_scorer) as server:
        req = urllib.request.Request(f"{server.url}/generate", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400 and "not JSON" in json.loads(err.value.read())["message"]
