"""Offsets cover the text exactly, token by token; the BOS policy is explicit."""
from __future__ import annotations

import pytest

import lightlens
from lightlens.text.tokens import adds_bos, encode

from conftest import TRICKY_TEXTS, byte_level_tokenizer, metaspace_tokenizer


def check_partition(tokenizer, text):
    enc = encode(tokenizer, text)
    spans = enc.offsets.tolist()
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (a, b), (c, _) in zip(spans, spans[1:]):
        assert a <= b == c  # contiguous, in order
    assert "".join(enc.tokens) == text
    # every token that decodes to whole characters covers exactly those characters
    for tid, tok in zip(enc.text_ids, enc.tokens):
        piece = tokenizer.decode([int(tid)])
        if "\ufffd" not in piece and piece.strip() and tokenizer.unk_token not in (piece,):
            assert piece.strip() == tok.strip(), (piece, tok)
    return enc


@pytest.mark.parametrize("make", [byte_level_tokenizer, metaspace_tokenizer])
@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_offsets_partition_text(make, text):
    check_partition(make(), text)


@pytest.mark.real_model
@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_offsets_partition_text_real_tokenizer(smollm2, text):
    enc = check_partition(smollm2.tokenizer, text)
    if text == "Hello world":
        assert enc.tokens == ["Hello", " world"]


def test_bos_detection():
    assert adds_bos(metaspace_tokenizer()) is True
    assert adds_bos(byte_level_tokenizer()) is False


@pytest.mark.real_model
def test_smollm2_does_not_add_bos(smollm2):
    r = lightlens.score("Hello world", model=smollm2)
    assert not r.bos and r.num_scored == 1


def test_bos_true_without_bos_token_is_an_error():
    tok = byte_level_tokenizer()
    tok.bos_token = None
    with pytest.raises(ValueError, match="no BOS"):
        encode(tok, "Hello", bos=True)


def test_multibyte_continuation_tokens_cover_nothing():
    enc = encode(byte_level_tokenizer(), "😀")  # four byte-tokens; the last completes the emoji
    assert enc.tokens[-1] == "😀" and all(t == "" for t in enc.tokens[:-1]) and len(enc.tokens) > 1
