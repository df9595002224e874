"""The `lightlens` command, run as a user would (a subprocess)."""
from __future__ import annotations

import json
import math
import os
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


# ---- failing like a command-line tool (issue 10, §5) --------------------------------------------

DEAD = "vllm+http://127.0.0.1:9"  # nothing listens on the discard port


def lightlens_cmd(*args, input=None, env=None, cwd=None, text=True):
    return subprocess.run([sys.executable, "-m", "lightlens", *args], capture_output=True, text=text,
                          input=input, timeout=300, env={**os.environ, **(env or {})}, cwd=cwd)


def strict_json(s: str):
    """JSON as the standard defines it: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(s, parse_constant=refuse)


def assert_fails_in_one_line(out, match=""):
    lines = out.stderr.strip().splitlines()
    assert out.returncode not in (0, None), out.stderr
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("lightlens") and match in lines[0], lines[0]


@pytest.fixture
def bad(tmp_path):
    """Inputs that cannot be read: a missing file, a folder, Latin-1 bytes, broken JSONL, a file as cache."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": "no closing brace"\n')
    (tmp_path / "good.jsonl").write_text('{"text": "The cat sat on the mat."}\n')
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path


BAD_INPUTS = [  # (arguments, what the one line must say); {x} is a path under the `bad` folder
    (("score", "Hello", "--model", DEAD, "--retries", "0", "--timeout", "1"), "--retries"),
    (("score", "Hello", "--max-length", "1"), "max_length"),
    (("score", "Hello", "--top-k", "100000"), "top_k"),
    (("score", "Hello", "--stride", "0"), "stride"),
    (("score", "-f", "{missing}"), "missing"),
    (("score", "-f", "{folder}"), "folder"),
    (("score", "-f", "{latin1.txt}"), "not valid UTF-8 at byte 3"),
    (("score", "Hello", "--model", DEAD, "--device", "cpu"), "--device"),
    (("score", "Hello", "--retries", "2"), "server"),
    (("score", "Hello", "--top-k", "three"), "--top-k"),
    (("score", "Hello", "--model", DEAD, "--bos", "yes", "--retries", "0"), "bos"),
    (("perplexity", "{good.jsonl}", "--model", DEAD, "--retries", "0", "--timeout", "1"), "127.0.0.1:9"),
    (("perplexity", "{good.jsonl}", "--max-length", "1"), "max_length"),
    (("perplexity", "{good.jsonl}", "--max-tokens", "0"), "max_tokens"),
    (("perplexity", "{good.jsonl}", "--batch-size", "0"), "batch-size"),
    (("perplexity", "{missing}"), "missing"),
    (("perplexity", "{broken.jsonl}"), "broken.jsonl:2"),
    (("perplexity", "{latin1.txt}"), "latin1.txt"),
    (("perplexity", "{good.jsonl}", "--model", DEAD, "--dtype", "float16"), "--dtype"),
    (("corpus", "{good.jsonl}", "--model", DEAD, "--retries", "0", "--timeout", "1"), "127.0.0.1:9"),
    (("corpus", "{good.jsonl}", "--max-length", "1"), "max_length"),
    (("corpus", "{good.jsonl}", "--top-k", "100000"), "top_k"),
    (("corpus", "{missing}"), "missing"),
    (("corpus", "{broken.jsonl}"), "broken.jsonl:2"),
    (("corpus", "{good.jsonl}", "--out", "{folder}"), "folder"),
    (("corpus", "{good.jsonl}", "--model", DEAD, "--device", "cpu"), "--device"),
]


@pytest.mark.parametrize("args,match", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_every_bad_input_fails_in_one_line(gpt2_dir, bad, args, match):
    """A non-zero exit, one line on stderr, no traceback, and nothing but JSON on stdout."""
    args = [str(bad / a[1:-1]) if a.startswith("{") else a for a in args]
    model = [] if "--model" in args else ["--model", str(gpt2_dir)]
    out = lightlens_cmd(*args, *model, "--json", cwd=bad)
    assert_fails_in_one_line(out, match)
    assert out.stdout.strip() == "" or strict_json(out.stdout)
    assert not (bad / "scores.parquet").exists()


def test_download_fails_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("the cache cannot be a file")
    out = lightlens_cmd("download", env={"LIGHTLENS_CACHE": str(tmp_path / "a-file")})
    assert_fails_in_one_line(out)
    assert out.stdout == ""


def test_debug_shows_the_traceback(gpt2_dir):
    bad = ("score", "Hello", "--top-k", "100000")
    for args in (("--debug", *bad), (*bad, "--debug")):
        out = lightlens_cmd(*args, "--model", str(gpt2_dir))
        assert out.returncode != 0 and "Traceback" in out.stderr and "ValueError: top_k" in out.stderr


def test_a_dead_server_fails_fast_and_names_the_cli_options():
    import time

    start = time.monotonic()
    out = lightlens_cmd("score", "Hello", "--model", DEAD, "--retries", "0", "--timeout", "1")
    assert time.monotonic() - start < 30
    assert_fails_in_one_line(out, "--retries/--timeout")
    assert "retries=" not in out.stderr


def test_server_specs_and_server_options_work_in_every_subcommand(bad):
    from lightlens.testing import MockServer, word_scorer

    with MockServer("vllm", word_scorer) as server:
        spec = f"vllm+{server.url}?model=mock"
        score = lightlens_cmd("score", "The cat sat.", "--model", spec, "--retries", "0", "--timeout", "30", "--json")
        assert score.returncode == 0, score.stderr
        assert lightlens.ScoreResult.from_dict(strict_json(score.stdout)).tokens == ["The", " cat", " sat."]
        for cmd in (("perplexity", "good.jsonl"), ("corpus", "good.jsonl", "--out", "s.parquet")):
            out = lightlens_cmd(*cmd, "--model", spec, "--timeout", "30", "--json", cwd=bad)
            assert out.returncode == 0, out.stderr
            assert strict_json(out.stdout)["num_scored"] == len(word_scorer("The cat sat on the mat.").logprobs) - 1
    with MockServer("vllm", word_scorer, faults=["500"]) as server:  # --retries reaches the server's client
        spec = f"vllm+{server.url}?model=mock"
        assert_fails_in_one_line(lightlens_cmd("score", "Hi there", "--model", spec, "--retries", "0"), "500")
        assert lightlens_cmd("score", "Hi there", "--model", spec, "--retries", "1").returncode == 0


def test_bos_and_method_options_reach_the_api(gpt2_dir, tmp_path):
    text = "Hello world! Hello again, world."
    for opts, kw in ((("--bos", "yes"), {"bos": True}), (("--method", "logits"), {"method": "logits"}),
                     (("--bos", "no", "--method", "fused"), {"bos": False, "method": "fused"})):
        out = lightlens_cmd("score", text, "--model", str(gpt2_dir), "--json", *opts)
        assert out.returncode == 0, out.stderr
        want = lightlens.score(text, model=gpt2_dir, top_k=3, **kw)
        got = lightlens.ScoreResult.from_dict(strict_json(out.stdout))
        assert got.num_scored == want.num_scored and got.perplexity == pytest.approx(want.perplexity, rel=1e-5)
    f = tmp_path / "t.txt"
    f.write_text(text)
    out = lightlens_cmd("perplexity", str(f), "--model", str(gpt2_dir), "--bos", "yes", "--json")
    want = lightlens.perplexity(f, model=gpt2_dir, bos=True, progress=False)
    assert strict_json(out.stdout)["num_scored"] == want.num_scored == len(want.documents[0])


def test_ctrl_c_says_how_to_resume_and_exits_130(gpt2_dir, tmp_path):
    import signal
    import time

    rows = [{"id": str(i), "text": "The quick brown fox jumps over the lazy dog. " * 40} for i in range(3000)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.Popen([sys.executable, "-m", "lightlens", "corpus", "c.jsonl", "--model", str(gpt2_dir),
                             "--out", "s.parquet"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(tmp_path.glob("s.parquet.parts/part-*")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    last = stderr.decode().replace("\r", "\n").strip().splitlines()[-1]
    assert proc.returncode == 130 and "Traceback" not in stderr.decode(), stderr.decode()[-3000:]
    assert last == "lightlens: interrupted; run the same command again to resume" and stdout == b""


def test_json_stdout_is_json_while_a_gguf_is_dequantised(tmp_path):
    from test_gguf_race import write_tiny_gguf

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = lightlens_cmd("score", "The cat sat.", "--model", str(gguf), "--json",
                        env={"LIGHTLENS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert "dequantising" in out.stderr and strict_json(out.stdout)["format"] == "lightlens.ScoreResult/1"


def test_json_writes_null_for_nan(gpt2_dir, tmp_path):
    """One token and no BOS: nothing is scored, so perplexity is NaN, written as null."""
    out = lightlens_cmd("score", "a", "--model", str(gpt2_dir), "--json")
    assert out.returncode == 0, out.stderr
    assert strict_json(out.stdout)["logprobs"] == [None]
    (tmp_path / "one.txt").write_text("a")
    (tmp_path / "one.jsonl").write_text('{"text": "a"}\n')
    for cmd in (("perplexity", "one.txt"), ("corpus", "one.jsonl", "--out", "s.parquet")):
        out = lightlens_cmd(*cmd, "--model", str(gpt2_dir), "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert strict_json(out.stdout)["perplexity"] is None


def test_files_and_stdin_are_read_exactly(gpt2_dir, tmp_path):
    text = "a\r\nb\r\n"
    f = tmp_path / "crlf.txt"
    f.write_bytes(text.encode())
    for args, stdin in ((("-f", str(f)), None), (("-f", "-"), text.encode())):
        out = lightlens_cmd("score", *args, "--model", str(gpt2_dir), "--json", input=stdin, text=False)
        assert out.returncode == 0, out.stderr
        r = lightlens.ScoreResult.from_dict(strict_json(out.stdout))
        assert r.text == text and int(r.offsets[-1][1]) == len(text)  # offsets index the file


def test_invalid_utf8_is_named_by_position(gpt2_dir, tmp_path):
    argv = subprocess.run([sys.executable, "-m", "lightlens", "score", b"ok \xff", "--model", str(gpt2_dir)],
                          capture_output=True, text=True, timeout=300)
    assert_fails_in_one_line(argv, "the text argument: not valid UTF-8 at byte 3 (0xff")
    stdin = lightlens_cmd("score", "-f", "-", "--model", str(gpt2_dir), input=b"ab\xfe", text=False)
    assert stdin.returncode == 1 and b"stdin: not valid UTF-8 at byte 2 (0xfe" in stdin.stderr


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_stdout_that_is_not_utf8_does_not_crash(gpt2_dir, encoding):
    text, env = "Café 😀 naïve", {"PYTHONIOENCODING": encoding}
    table = lightlens_cmd("score", text, "--model", str(gpt2_dir), env=env, text=False)
    assert table.returncode == 0 and "perplexity" in table.stdout.decode(encoding), table.stderr
    out = lightlens_cmd("score", text, "--model", str(gpt2_dir), "--json", env=env, text=False)
    assert out.returncode == 0, out.stderr
    assert lightlens.ScoreResult.from_dict(strict_json(out.stdout.decode("ascii"))).text == text


def test_corpus_with_failed_documents_exits_nonzero(tmp_path):
    """The scores are written, the failure is said on stderr, and the exit status is 1 (not 0)."""
    from lightlens.testing import MockServer, word_scorer

    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": str(i), "text": f"Document {i} is here."}) + "\n"
                                              for i in range(4)))
    with MockServer("vllm", word_scorer, faults=["wrong_length"]) as server:
        out = lightlens_cmd("corpus", "c.jsonl", "--model", f"vllm+{server.url}?model=mock", "--json", cwd=tmp_path)
    assert out.returncode == 1 and strict_json(out.stdout)["num_failed"] == 1, out.stderr
    assert "run the same command again to retry them" in out.stderr.strip().splitlines()[-1]


def test_server_hints_name_the_cli_spelling():
    """A library hint such as ``pass tokenizer=`` is given as what the command takes."""
    from lightlens.testing import MockServer, word_scorer

    with MockServer("lightllm", word_scorer) as server:
        out = lightlens_cmd("score", "Hi there", "--model", f"lightllm+{server.url}")
    assert_fails_in_one_line(out, "?tokenizer=PATH in the --model URL")
    assert "tokenizer= " not in out.stderr


def test_a_reader_that_closes_the_pipe_is_not_an_error(gpt2_dir, tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("Hello world! Hello again, world. " * 200)
    cmd = f"{sys.executable} -m lightlens score -f {f} --model {gpt2_dir} | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
    assert out.stdout.splitlines()[0].split()[:2] == ["#", "token"]


def test_an_error_from_a_library_below_is_one_line(gpt2_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(gpt2_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated download
    out = run("score", "Hello world", "--model", str(broken))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--debug" in out.stderr


def test_a_dead_server_in_a_corpus_run_is_one_line(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "Hello world"}\n{"text": "Hello again"}\n')
    out = run("corpus", str(src), "--out", str(tmp_path / "s.parquet"), "--model",
              "vllm+http://127.0.0.1:9?model=m", "--retries", "0", "--timeout", "1", "--json")
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
