"""Every docstring example in the package runs (doctest), against tiny seeded models.

The names the examples use are defined once here: ``tiny`` (a loaded 2-layer GPT-2 with a
byte-level tokenizer), ``tiny_dir`` (its folder), ``tiny_llama`` (a 2-layer Llama: another
tokenizer, for comparisons), ``result`` (a ScoreResult of ``TEXT`` under ``tiny``, top-3),
``tmp`` (an empty folder per module), ``server`` (a running vLLM-format ``MockServer``), ``lightlens``, ``np`` and ``torch``. Examples that need
what CI lacks (a GPU, the network) are the only ones marked ``+SKIP``.
"""
from __future__ import annotations

import doctest
import importlib

import pytest

from test_layers import modules

import lightlens

TEXT = "Hello world! Hello again, world."
MODULES = sorted(m for m in modules() if not m.endswith("__main__"))  # __main__ runs the CLI


@pytest.fixture(scope="module")
def server():
    from lightlens.testing import MockServer, word_scorer

    with MockServer("vllm", word_scorer) as s:
        yield s


@pytest.fixture(scope="module")
def namespace(gpt2_dir, tiny_gpt2, tiny_llama, server):
    import numpy as np
    import torch

    from lightlens.remote import RemoteModel
    from lightlens.remote.http import HttpPool

    return {"pool": HttpPool(["http://127.0.0.1:9"]), "RemoteModel": RemoteModel, "lightlens": lightlens, "np": np, "torch": torch, "tiny": tiny_gpt2, "tiny_dir": gpt2_dir,
            "tiny_llama": tiny_llama, "result": tiny_gpt2.score(TEXT, top_k=3), "TEXT": TEXT,
            "server": server}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, namespace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, extraglobs={**namespace, "tmp": tmp_path}, verbose=False,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_examples_are_not_skipped():
    """Most examples run: +SKIP is kept for what needs a GPU or the network."""
    lines = skipped = 0
    for name, path in modules().items():
        for line in path.read_text().splitlines():
            if line.strip().startswith(">>>"):
                lines += 1
                skipped += "doctest: +SKIP" in line
    assert lines > 120 and skipped <= lines // 8, f"{skipped} of {lines} example lines are skipped"
