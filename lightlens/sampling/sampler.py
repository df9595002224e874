"""The Sampler: an ordered chain of steps, renormalised after each, and the draw.

At each generation step the loop calls ``lp = sampler(raw_logprobs, state)``, then
``chosen = sampler.draw(lp, uniforms)``, then ``sampler.observe(state, chosen, lp)``. ``lp`` is
the distribution actually sampled from (its kept set: the finite entries).

>>> import torch
>>> s = Sampler(temperature(0.5), top_k(2))
>>> s
Sampler(temperature(0.5), top_k(2))
>>> lp = s(torch.tensor([[0.5, 0.3, 0.2]]).log())
>>> lp.exp()
tensor([[0.7353, 0.2647, 0.0000]])
>>> s.draw(lp, torch.tensor([0.8])).tolist()  # u = 0.8 > 0.7353: the second id
[1]
"""
from __future__ import annotations

import math

import torch

from . import penalties, truncation
from . import temperature as temperatures
from .step import Custom, Step, custom
from .temperature import temperature
from .truncation import greedy, top_k, top_p

# GenerationConfig settings a sampler cannot honour, with the values that mean "off".
UNSUPPORTED = {
    "num_beams": (1,), "num_beam_groups": (1,), "diversity_penalty": (0,), "penalty_alpha": (), "dola_layers": (),
    "top_h": (), "no_repeat_ngram_size": (0,), "encoder_no_repeat_ngram_size": (0,), "bad_words_ids": ([],),
    "min_length": (0,), "min_new_tokens": (0,), "forced_bos_token_id": (), "forced_eos_token_id": (),
    "exponential_decay_length_penalty": (), "suppress_tokens": ([],), "begin_suppress_tokens": ([],),
    "sequence_bias": ({},), "guidance_scale": (1,), "encoder_repetition_penalty": (1,),
    "remove_invalid_values": (False,), "watermarking_config": (), "constraints": ([],), "force_words_ids": ([],),
    "token_healing": (False,),
}  # None is off for every one
# The sampling options Hugging Face reads when do_sample, in its order, and the value for which it
# adds no warper (min_p: it adds one whenever set).
WARPERS = {"temperature": 1, "top_k": 0, "top_p": 1, "min_p": None, "typical_p": 1, "epsilon_cutoff": 0,
           "eta_cutoff": 0}


def as_steps(item) -> tuple[Step, ...]:
    """A step, a Sampler (its steps) or a plain function ``f(logprobs, state)`` as steps.

    Args:
        item: what was passed to ``Sampler`` or ``|``.

    >>> as_steps(top_k(3)), as_steps(Sampler(top_k(3), top_p(0.9)))
    ((top_k(3),), (top_k(3), top_p(0.9)))
    >>> as_steps(0.9)
    Traceback (most recent call last):
    TypeError: a sampler step is a step (e.g. lightlens.sampling.top_p(0.9)), a Sampler, or a function f(logprobs, state) -> logprobs; got 0.9
    """
    if isinstance(item, Sampler):
        return item.steps
    if isinstance(item, Step):
        return (item,)
    if callable(item):
        return (custom(item),)
    raise TypeError("a sampler step is a step (e.g. lightlens.sampling.top_p(0.9)), a Sampler, or a function "
                    f"f(logprobs, state) -> logprobs; got {item!r}")


def _bad_rows(x: torch.Tensor) -> torch.Tensor:
    """[B] int8: 0 fine, 1 a NaN or +inf entry, 2 every entry −inf (no sync)."""
    invalid = ~(x < math.inf) & ~torch.isneginf(x)
    return torch.where(invalid.any(-1), 1, torch.where(torch.isneginf(x).all(-1), 2, 0)).to(torch.int8)


class Sampler:
    """An ordered chain of steps; ``Sampler()`` with no steps samples from the model's own
    distribution. Compose with ``|`` (``Sampler(a) | b | Sampler(c, d)``: a new Sampler); a plain
    function ``f(logprobs, state) -> logprobs`` is accepted wherever a step is.

    Args:
        *steps: steps, Samplers (their steps, in order) or functions.

    >>> Sampler(temperature(0.8)) | top_p(0.9)
    Sampler(temperature(0.8), top_p(0.9))
    >>> Sampler().describe()
    "the model's own distribution (no steps)"
    """

    def __init__(self, *steps):
        self.steps: tuple[Step, ...] = tuple(s for item in steps for s in as_steps(item))

    @classmethod
    def greedy(cls) -> "Sampler":
        """Always the most probable token (lowest id on ties).

        >>> Sampler.greedy(), Sampler.greedy().is_greedy
        (Sampler(greedy()), True)
        """
        return cls(greedy())

    @classmethod
    def from_options(cls, *, temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                     min_p: float | None = None, typical_p: float | None = None, epsilon_cutoff: float | None = None,
                     eta_cutoff: float | None = None, repetition_penalty: float | None = None,
                     frequency_penalty: float | None = None, presence_penalty: float | None = None) -> "Sampler":
        """A Sampler from the usual options, in Hugging Face's order: the penalties (repetition,
        frequency, presence), then temperature, top_k, top_p, min_p, typical_p, epsilon_cutoff,
        eta_cutoff. Options left None are skipped; ``temperature=0`` is greedy (the truncations
        after it are checked, then left out: one token is left). No options: the model's own
        distribution.

        Args:
            temperature: >= 0, see ``lightlens.sampling.temperature``.
            top_k: >= 1.
            top_p: in (0, 1].
            min_p: in [0, 1].
            typical_p: in (0, 1].
            epsilon_cutoff: in [0, 1).
            eta_cutoff: in [0, 1).
            repetition_penalty: > 0 (Hugging Face's, prompt and generated tokens).
            frequency_penalty: finite (OpenAI's, generated tokens).
            presence_penalty: finite (OpenAI's, generated tokens).

        >>> Sampler.from_options(temperature=0.7, top_p=0.9, repetition_penalty=1.1)
        Sampler(repetition_penalty(1.1), temperature(0.7), top_p(0.9))
        >>> Sampler.from_options(temperature=0, top_k=40)
        Sampler(greedy())
        >>> Sampler.from_options(top_p=1.5)
        Traceback (most recent call last):
        ValueError: top_p must be in (0, 1] (1 keeps every token), got 1.5
        """
        chain = [(make, value) for make, value in (
            (penalties.repetition_penalty, repetition_penalty), (penalties.frequency_penalty, frequency_penalty),
            (penalties.presence_penalty, presence_penalty), (temperatures.temperature, temperature),
            (truncation.top_k, top_k), (truncation.top_p, top_p), (truncation.min_p, min_p),
            (truncation.typical_p, typical_p), (truncation.epsilon_cutoff, epsilon_cutoff),
            (truncation.eta_cutoff, eta_cutoff)) if value is not None]
        steps = [make(value) for make, value in chain]  # every option checked, even after greedy
        first_greedy = next((i for i, step in enumerate(steps) if step.is_greedy), None)
        return cls(*(steps if first_greedy is None else [*steps[:first_greedy], greedy()]))

    @classmethod
    def from_generation_config(cls, config) -> "Sampler":
        """The Sampler for a Hugging Face ``GenerationConfig``, with the meanings ``generate`` gives
        it: unset fields take Hugging Face's own defaults (``top_k=50``, ...) as ``generate`` does;
        ``do_sample`` False (the default) is greedy after the repetition penalty; with
        ``do_sample`` the warpers Hugging Face adds (temperature != 1, top_k != 0, top_p < 1,
        min_p, typical_p < 1, epsilon and eta cutoffs > 0), in its order; temperature 0 is greedy.
        Settings a sampler cannot honour (beam search, n-gram bans, forced or suppressed tokens,
        minimum lengths, ...) are refused with their names.

        Args:
            config: a ``transformers.GenerationConfig`` (or anything with its attributes).

        >>> from transformers import GenerationConfig
        >>> Sampler.from_generation_config(GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9))
        Sampler(temperature(0.7), top_k(50), top_p(0.9))
        >>> Sampler.from_generation_config(GenerationConfig(num_beams=4))
        Traceback (most recent call last):
        ValueError: a sampler cannot honour these GenerationConfig settings: num_beams=4 (set them to their defaults, or use transformers' generate)
        """
        defaults_of = getattr(type(config), "_get_default_generation_params", None)
        defaults = defaults_of() if callable(defaults_of) else {}

        def get(name):
            value = getattr(config, name, None)
            return defaults.get(name) if value is None else value

        refused = [f"{name}={get(name)!r}" for name, off in UNSUPPORTED.items() if get(name) not in (None, *off)]
        if refused:
            raise ValueError(f"a sampler cannot honour these GenerationConfig settings: {', '.join(refused)} "
                             "(set them to their defaults, or use transformers' generate)")
        theta = get("repetition_penalty")
        penalty = {} if theta in (None, 1) else {"repetition_penalty": theta}
        if not get("do_sample"):
            return cls(cls.from_options(**penalty), greedy())
        options = {name: get(name) for name, off in WARPERS.items() if get(name) not in (None, off)}
        return cls.from_options(**penalty, **options)

    def __or__(self, other) -> "Sampler":
        return Sampler(self, other)

    def __ror__(self, other) -> "Sampler":
        return Sampler(other, self)

    @property
    def is_greedy(self) -> bool:
        """True when the chain leaves one token per row: a greedy step (or temperature 0) followed
        only by built-in steps (which never bring a removed token back; user steps might).

        >>> Sampler(greedy(), top_k(5)).is_greedy, Sampler(top_k(1)).is_greedy
        (True, False)
        """
        last = max((i for i, s in enumerate(self.steps) if s.is_greedy), default=None)
        return last is not None and all(type(s).__module__.startswith(__package__ + ".") and not isinstance(s, Custom)
                                        for s in self.steps[last:])

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        """The chain's distribution: each step in order, each output renormalised (log_softmax)
        before the next step sees it. The input is not modified.

        Args:
            logprobs: [B, V] float32 log-probabilities of the model (−inf: removed).
            state: the SamplerState (steps that read the context, memory or other models need it).

        Raises:
            ValueError: a row of the input is NaN, or has no finite entry; a step returned NaN or
                +inf, or removed every token of a row (the message names the row and the step).

        >>> Sampler(top_k(1))(torch.tensor([[-1.0, -0.1, -3.0]]))
        tensor([[-inf, 0., -inf]])
        """
        if not isinstance(logprobs, torch.Tensor) or logprobs.dim() != 2 or not logprobs.is_floating_point():
            got = getattr(logprobs, "shape", type(logprobs))
            raise ValueError(f"logprobs must be a float tensor [B, V], got {got}")
        if state is not None and (state.ids.shape[0], state.vocab_size) != tuple(logprobs.shape):
            raise ValueError(f"logprobs are {tuple(logprobs.shape)} but the state has {state.ids.shape[0]} rows "
                             f"and vocab_size {state.vocab_size}")
        checks, x = [_bad_rows(logprobs)], logprobs
        for step in self.steps:
            y = step(x, state)
            if not isinstance(y, torch.Tensor) or y.shape != logprobs.shape:
                raise ValueError(f"{step!r} must return a tensor shaped like its input {tuple(logprobs.shape)}, "
                                 f"got {getattr(y, 'shape', type(y))}")
            checks.append(_bad_rows(y))
            x = y.to(logprobs.dtype).log_softmax(-1)
        codes = torch.stack(checks)
        if bool(codes.any()):  # the only sync: a failure is reported at its first step
            where, row = (int(i) for i in codes.nonzero()[0])
            code = int(codes[where, row])
            if where == 0:
                problem = "has NaN or +inf entries" if code == 1 else "has no finite entry (every token removed)"
                raise ValueError(f"row {row} of the log-probabilities given to the sampler {problem}")
            step = self.steps[where - 1]
            problem = "returned NaN or +inf" if code == 1 else "removed every token (all -inf)"
            raise ValueError(f"sampler step {step!r} {problem} in row {row}")
        return x if self.steps else logprobs.log_softmax(-1)

    def draw(self, logprobs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """[B] int64: one id per row by inverse CDF in id order, in float64: the first id whose
        cumulative probability exceeds ``u`` times the row's total. A removed token (probability 0)
        is never drawn, whatever ``u`` (u that rounds up to the total gives the last kept id).

        Args:
            logprobs: [B, V] the chain's output (any log-weights; −inf never drawn).
            uniforms: [B] uniform numbers in [0, 1), e.g. ``torch.rand(B, generator=g)``.

        >>> lp = torch.tensor([[0.25, 0.0, 0.75]]).log()
        >>> [Sampler().draw(lp, torch.tensor([u])).item() for u in (0.0, 0.24, 0.25, 0.999)]
        [0, 0, 2, 2]
        """
        if tuple(uniforms.shape) != (logprobs.shape[0],):
            raise ValueError(f"uniforms must be [B] = [{logprobs.shape[0]}], got {tuple(uniforms.shape)}")
        probs = logprobs.double().exp()
        cdf = probs.cumsum(-1)
        u = uniforms.to(device=cdf.device, dtype=torch.float64)[:, None]
        chosen = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
        last_kept = probs.shape[-1] - 1 - (probs > 0).flip(-1).to(torch.int8).argmax(-1, keepdim=True)
        return torch.minimum(chosen, last_kept)[:, 0]

    def observe(self, state, chosen: torch.Tensor, final_logprobs: torch.Tensor) -> None:
        """Tell every step which ids were drawn (mirostat moves its threshold).

        Args:
            state: this step's SamplerState.
            chosen: [B] int64 drawn ids.
            final_logprobs: [B, V] the distribution they were drawn from (``__call__``'s output).

        >>> Sampler(top_k(2)).observe(None, torch.tensor([0]), torch.zeros(1, 2)) is None
        True
        """
        for step in self.steps:
            step.observe(state, chosen, final_logprobs)

    def __repr__(self) -> str:
        return f"Sampler({', '.join(map(repr, self.steps))})"

    def describe(self) -> str:
        """One line: the steps in order.

        >>> Sampler(temperature(0.8), top_p(0.9)).describe()
        'temperature(0.8) → top_p(0.9), renormalised after each step'
        """
        if not self.steps:
            return "the model's own distribution (no steps)"
        return " → ".join(map(repr, self.steps)) + (", renormalised after each step" if len(self.steps) > 1 else "")

