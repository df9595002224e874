"""Options mean one thing on every path and are checked before any work (issue 10, section 4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lightlens
from lightlens.engine import head as head_module
from lightlens.text.tokens import truncate_tokens


@pytest.mark.parametrize("top_k", [65, 100000, -1, 2.0, True])
def test_top_k_has_one_limit_on_every_path(tiny_gpt2, top_k):
    with pytest.raises(ValueError, match=r"top_k must be an int in \[0, 64\]"):
        tiny_gpt2.score("Hello world", top_k=top_k)
    with pytest.raises(ValueError, match=r"top_k must be an int in \[0, 64\]"):
        tiny_gpt2.score("Hello world", top_k=top_k, method="logits")


def test_numpy_integers_are_integers(tiny_gpt2):
    r = tiny_gpt2.score("Hello world! Hello again, world.", top_k=np.int64(3), max_length=np.int32(4),
                        stride=np.int64(2), batch_size=np.int16(2))
    plain = tiny_gpt2.score("Hello world! Hello again, world.", top_k=3, max_length=4, stride=2, batch_size=2)
    np.testing.assert_array_equal(r.logprobs, plain.logprobs)  # the same computation, bit for bit


@pytest.mark.parametrize("name,value", [("max_length", True), ("stride", 1.5), ("batch_size", False),
                                        ("max_length", 1), ("batch_size", 0)])
def test_bools_floats_and_out_of_range_ints_are_refused(tiny_gpt2, name, value):
    with pytest.raises(ValueError, match=name):
        tiny_gpt2.score("Hello world", **{name: value})


@pytest.mark.parametrize("bos", ["yes", 1, "False"])
def test_bos_is_none_true_or_false(tiny_gpt2, bos):
    with pytest.raises(ValueError, match="bos must be None"):
        tiny_gpt2.score("Hello world", bos=bos)


def test_a_dataframe_or_dict_is_refused_a_series_is_texts(tiny_gpt2):
    import pandas as pd

    df = pd.DataFrame({"id": ["a", "b"], "text": ["Hello world", "Hello again"]})
    with pytest.raises(TypeError, match="score_corpus"):
        lightlens.score(df, model=tiny_gpt2)
    with pytest.raises(TypeError, match="score_corpus"):
        lightlens.score({"a": "Hello world"}, model=tiny_gpt2)
    rs = lightlens.score(df["text"], model=tiny_gpt2)
    assert [r.text for r in rs] == ["Hello world", "Hello again"]


@pytest.mark.parametrize("n", [0, -1, 1.5])
def test_max_tokens_must_be_positive(tiny_gpt2, n):
    with pytest.raises(ValueError, match="max_tokens must be an int >= 1"):
        lightlens.perplexity(["Hello world! Hello again."], model=tiny_gpt2, max_tokens=n, progress=False)
    with pytest.raises(ValueError, match="max_tokens must be an int >= 1"):
        truncate_tokens(tiny_gpt2.tokenizer, "Hello world", n)


def test_a_lone_surrogate_is_named_with_its_position(tiny_gpt2):
    with pytest.raises(ValueError, match=r"lone surrogate U\+D800 at character 4"):
        tiny_gpt2.score("bad \ud800 text")


def test_find_head_lets_out_of_memory_surface(tiny_gpt2, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(head_module, "last_hidden", out_of_memory)
    probe = torch.tensor([[1, 2, 3]])
    with pytest.raises(torch.OutOfMemoryError):
        head_module.find_head(tiny_gpt2.model, probe)
    monkeypatch.setattr(head_module, "last_hidden", lambda *a: (_ for _ in ()).throw(TypeError("no mask")))
    assert head_module.find_head(tiny_gpt2.model, probe) is None  # an unusual base model: logits path


def test_the_top_k_limit_is_the_kernels_limit():
    from lightlens import options
    from lightlens.kernels import common

    assert options.MAX_TOP_K == common.MAX_TOP_K


def test_importing_lightlens_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lightlens; lightlens.ScoreResult; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_server_refuses_a_dataframe_too():
    import pandas as pd

    from lightlens.testing import MockServer, word_scorer

    df = pd.DataFrame({"text": ["Hello world", "Hello again"]})
    with MockServer("vllm", word_scorer) as server:
        with pytest.raises(TypeError, match="score_corpus"):
            lightlens.score(df, model=f"vllm+{server.url}")
        assert [r.text for r in lightlens.score(df["text"], model=f"vllm+{server.url}")] == df["text"].tolist()
        assert not any(body.get("prompt") == "text" for body, _ in server.requests)  # no column name sent


def test_numpy_bools_are_bools(tiny_llama):
    assert tiny_llama.score("Hello world", bos=np.False_).bos is False
    assert tiny_llama.score("Hello world", bos=np.True_).bos is True
