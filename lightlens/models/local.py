"""`LanguageModel`: a loaded causal LM plus its tokenizer, ready to score text."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..engine.head import Head, find_head

PROBE_TEXT = "The quick brown fox jumps over the lazy dog, 1 2 3."


class LanguageModel:
    """A transformers causal LM with its tokenizer; what :func:`lightlens.load` returns.

    >>> lm = lightlens.load(tiny_dir)
    >>> lm.score("Hello world").tokens
    ['Hello', ' world']
    """

    def __init__(self, model, tokenizer, *, name: str, source: str = "", revision: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.revision = revision
        self._head: Head | None | bool = False  # False: not looked up yet
        self._strings = np.empty(0, dtype=object)  # token_strings' table: id -> decoded string

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the input embeddings' device (the weights' device unless the
        model is spread over several with ``device_map``)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (statistics are always computed in float32)."""
        return self.model.dtype

    @property
    def context_length(self) -> int:
        """The longest input the model takes (its position limit)."""
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        for attr in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return int(min(self.tokenizer.model_max_length, 1 << 20))

    @property
    def head(self) -> Head | None:
        """The LM head when hidden-state scoring reproduces the model's logits, else None."""
        if self._head is False:
            ids = self.tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
            self._head = find_head(self.model, torch.tensor([ids], device=self.device))
        return self._head

    def info(self) -> dict[str, Any]:
        """Metadata stored in every result: name, revision, dtype, device, backend."""
        return {
            "name": self.name,
            "revision": self.revision,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "backend": "transformers",
        }

    @property
    def vocab_size(self) -> int:
        """How many token ids the model takes (its input embedding's rows)."""
        return int(self.model.get_input_embeddings().weight.shape[0])

    def token_strings(self, ids) -> np.ndarray:
        """Each id decoded on its own, as an object array shaped like ``ids`` (-1: ""); every
        distinct id is decoded once per model, so top-k strings cost a table lookup.

        >>> tiny.token_strings(np.array([[-1, 0]])).shape
        (1, 2)
        """
        ids = np.asarray(ids, dtype=np.int64)
        valid = ids[ids >= 0]
        if valid.size:
            if valid.max() >= len(self._strings):
                grown = np.empty(int(valid.max()) + 1, dtype=object)
                grown[: len(self._strings)] = self._strings
                self._strings = grown
            missing = valid[np.equal(self._strings[valid], None)]
            if missing.size:
                new = np.unique(missing)
                self._strings[new] = self.tokenizer.batch_decode(new[:, None].tolist())
        out = np.full(ids.shape, "", dtype=object)
        out[ids >= 0] = self._strings[valid]
        return out

    def score(self, text: str | Sequence[str], *, top_k: int = 5, max_length: int | None = None,
              stride: int | None = None, bos: bool | None = None, batch_size: int | None = None,
              progress: bool | None = None, method: str = "auto"):
        """Score one text (returns a ScoreResult) or a list (returns a list); the options mean
        what they mean in :func:`lightlens.score`. A result (e.g. a :class:`Generation`) is
        scored as its exact token ids, never re-tokenised: ``lm.score(g).logprobs`` is what
        ``g.logprobs`` must equal.

        >>> len(tiny.score("Hello world", top_k=3).top_k_tokens[1])
        3
        """
        from ..engine.scoring import encoding_of, score_encodings, score_texts
        from ..results.score_result import ScoreResult
        from ..text.tokens import check_texts

        options = dict(top_k=top_k, max_length=max_length, stride=stride, bos=bos,
                       batch_size=batch_size, progress=progress, method=method)
        if isinstance(text, ScoreResult):  # its ids exactly (a Generation's, never re-tokenised)
            if bos is not None:
                raise ValueError("bos cannot apply to a result: its tokens (and BOS) are scored as they are")
            del options["bos"]
            return score_encodings(self, [encoding_of(self, text)], **options)[0]
        if isinstance(text, str):
            return score_texts(self, [text], **options)[0]
        return score_texts(self, check_texts(text), **options)

    def generate(self, prompt: str | Sequence[str], *, max_new_tokens: int = 64, sampler=None,
                 seed: int | None = None, stop: str | Sequence[str] | None = None, top_k: int = 5, n: int = 1,
                 bos: bool | None = None, use_cache: bool = True, batch_size: int = 32,
                 progress: bool | None = None):
        """Generate from one prompt (a :class:`Generation`; a list of ``n`` when ``n > 1``) or a
        list of prompts (a list, ``n`` per prompt, prompt-major); the options mean what they mean
        in :func:`lightlens.generate`.

        >>> tiny.generate("Hello", max_new_tokens=3).num_generated
        3
        """
        from ..engine.generation import generate_texts
        from ..text.tokens import check_texts

        prompts = [prompt] if isinstance(prompt, str) else check_texts(prompt)
        out = generate_texts(self, prompts, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
                             stop=stop, top_k=top_k, n=n, bos=bos, use_cache=use_cache,
                             batch_size=batch_size, progress=progress)
        return out[0] if isinstance(prompt, str) and n == 1 else out

    def branch(self, g, position: int, token_id: int, *, max_new_tokens: int = 64, sampler=None,
               seed: int | None = None, stop: str | Sequence[str] | None = None, top_k: int = 5,
               use_cache: bool = True):
        """Continue generation ``g`` from another choice: its tokens before ``position`` (ids
        exactly), then ``token_id`` (e.g. one of ``g.top_k_ids[position]``), then up to
        ``max_new_tokens`` new tokens. The result is a :class:`Generation` whose prompt ends
        with the chosen token, so ``branch.total_logprob`` compares with ``g``'s directly.

        >>> g = tiny.generate("Hello", max_new_tokens=4)
        >>> b = tiny.branch(g, g.num_prompt_tokens, int(g.top_k_ids[g.num_prompt_tokens, 1]), max_new_tokens=3)
        >>> bool(b.token_ids[b.num_prompt_tokens - 1] == g.top_k_ids[g.num_prompt_tokens, 1]), b.num_generated
        (True, 3)
        """
        from ..engine.generation import branch_prompt, generate_texts

        return generate_texts(self, [branch_prompt(self, g, position, token_id)], max_new_tokens=max_new_tokens,
                              sampler=sampler, seed=seed, stop=stop, top_k=top_k, use_cache=use_cache)[0]

    def stream(self, prompt: str | Sequence[str], *, max_new_tokens: int = 64, sampler=None,
               seed: int | None = None, stop: str | Sequence[str] | None = None, top_k: int = 5,
               n: int = 1, bos: bool | None = None, use_cache: bool = True, batch_size: int = 32):
        """Each generated token as it is chosen: iterate over the result to get
        :class:`GeneratedToken` objects (text, raw and sampled probabilities, rank, top-k with
        strings; ``index`` says which sequence when several run); once it is exhausted its
        ``generations`` hold the :class:`Generation` of every sequence. Same tokens as
        :meth:`generate` with the same options.

        >>> s = tiny.stream("Hello", max_new_tokens=3)
        >>> "".join(t.text for t in s) == s.generations[0].completion == tiny.generate(
        ...     "Hello", max_new_tokens=3).completion
        True
        """
        from ..engine.generation import GenerationStream
        from ..text.tokens import check_texts

        prompts = [prompt] if isinstance(prompt, str) else check_texts(prompt)
        return GenerationStream(self, prompts, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop,
                                top_k=top_k, n=n, bos=bos, use_cache=use_cache, batch_size=batch_size,
                                progress=False)

    def distributions(self, text: str, *, positions=None, max_length: int | None = None,
                      stride: int | None = None, bos: bool | None = None, method: str = "auto"):
        """The float32 log-probability rows [n, V] predicting the tokens at ``positions`` of
        ``text`` (all scored tokens when None), yielded a block at a time in position order:
        row ``i`` is the distribution token ``i`` was drawn from, so ``row[token_ids[i]]`` is
        ``score(text).logprobs[i]``. ``torch.cat(list(...))`` holds them all at once.

        >>> rows = torch.cat(list(tiny.distributions("Hello world! Hello again.", positions=[2])))
        >>> r = tiny.score("Hello world! Hello again.")
        >>> rows.shape, abs(float(rows[0, r.token_ids[2]]) - float(r.logprobs[2])) < 1e-5
        (torch.Size([1, 400]), True)
        """
        from ..engine.divergence import distributions

        return distributions(self, text, positions=positions, max_length=max_length, stride=stride,
                             bos=bos, method=method)

    def save_distributions(self, text: str, path, *, dtype: str = "float32", max_length: int | None = None,
                           stride: int | None = None, bos: bool | None = None):
        """Save every scored token's log-probability row of ``text`` (``dtype`` "float32" or
        "bfloat16") to a memory-mappable safetensors file; ``lightlens.divergence(text,
        base=path, model=...)`` then compares another model with it, without this one.

        >>> tiny.save_distributions("Hello world", tmp / "hw.safetensors").name
        'hw.safetensors'
        """
        from ..engine.divergence import save_distributions

        return save_distributions(self, text, path, dtype=dtype, max_length=max_length, stride=stride, bos=bos)

    def perplexity(self, source, *, max_length: int | None = None, stride: int | None = None,
                   bos: bool | None = None, batch_size: int | None = None, progress: bool | None = True,
                   max_tokens: int | None = None, text_field: str = "text", id_field: str = "id"):
        """Corpus perplexity with this model; the options mean what they mean in
        :func:`lightlens.perplexity`.

        >>> tiny.perplexity(["Hello world", "Hello again"], progress=False).num_documents
        2
        """
        from .perplexity import corpus_perplexity

        return corpus_perplexity(self, source, max_length=max_length, stride=stride, bos=bos,
                                 batch_size=batch_size, progress=progress, max_tokens=max_tokens,
                                 text_field=text_field, id_field=id_field)

    def __repr__(self) -> str:
        return (
            f"LanguageModel({self.name!r}, device={str(self.device)!r}, "
            f"dtype={self.info()['dtype']!r}, context={self.context_length})"
        )
