"""Samplers (lightlens/sampling): each step's kept set and probabilities against a float64
reference written here with numpy (random rows and edge cases: ties, −inf inputs, rows a step
would empty, top_p=1, min_p=0, k > V), against Hugging Face's own warpers, and by drawing:
frequencies over seeded draws against the sampler's distribution (chi-square)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GenerationConfig
from transformers.generation import logits_process as hf

from lightlens.sampling import (Sampler, SamplerState, contrastive, custom, entropy_temperature, epsilon_cutoff,
                                eta_cutoff, frequency_penalty, greedy, min_p, mirostat_v2, presence_penalty,
                                repetition_penalty, temperature, top_k, top_p, typical_p)

V = 50


# ---- float64 references, written plainly (numpy, one row at a time) ----

def np_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x[np.isfinite(x)].max()
    return x - (m + np.log(np.exp(x - m).sum()))


def np_entropy(lp):
    p = np.exp(lp)
    return -sum(pi * li for pi, li in zip(p, lp) if pi > 0)


def keep_top_k(lp, k):
    return lp >= np.sort(lp)[::-1][min(k, len(lp)) - 1]


def keep_top_p(lp, p):
    probs = np.exp(lp)
    return np.array([probs[probs > probs[v]].sum() < p for v in range(len(lp))])


def keep_min_p(lp, p):
    probs = np.exp(lp)
    return probs >= p * probs.max()


def keep_typical(lp, p):
    probs = np.exp(lp)
    key = np.abs(-lp - np_entropy(lp))
    return np.array([probs[key < key[v]].sum() < p for v in range(len(lp))])


def keep_epsilon(lp, eps):
    probs = np.exp(lp)
    return (probs >= eps) | (probs == probs.max())


def keep_eta(lp, eta):
    probs = np.exp(lp)
    cutoff = min(eta, math.sqrt(eta) * math.exp(-np_entropy(lp)))
    return (probs >= cutoff) | (probs == probs.max())


def keep_mirostat(lp, mu):
    return (-lp / math.log(2) <= mu) | (lp == lp.max())


def renormalise(scores, keep):
    """Float64 probabilities of ``scores`` restricted to ``keep`` (and to finite scores)."""
    s = np.where(keep & np.isfinite(scores), scores, -np.inf)
    return np.exp(np_log_softmax(s))


# ---- helpers ----

def random_logprobs(seed, rows=4, vocab=V, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(scale * torch.randn(rows, vocab, generator=g), -1)


def check_rows(step, x, reference, state=None):
    """The Sampler's output for ``x`` has the reference's kept set and probabilities (1e-6).
    ``reference(lp64_row, b) -> (keep, scores)`` or a keep mask (scores: the input row)."""
    out = Sampler(step)(x, state)
    for b in range(x.shape[0]):
        lp = np_log_softmax(x[b].double().numpy())
        ref = reference(lp, b)
        keep, scores = ref if isinstance(ref, tuple) else (ref, lp)
        keep = keep & np.isfinite(scores)
        got = out[b].double().numpy()
        np.testing.assert_array_equal(np.isfinite(got), keep, err_msg=f"{step!r} row {b}: kept set")
        np.testing.assert_allclose(np.exp(got), renormalise(scores, keep), atol=1e-6, err_msg=f"{step!r} row {b}")
    return out


def with_neg_inf(x, seed=0):
    """x with a few entries of each row removed (−inf) and renormalised."""
    g = torch.Generator().manual_seed(seed)
    removed = torch.rand(x.shape, generator=g) < 0.3
    removed[:, x.argmax(-1)] = False
    return x.masked_fill(removed, -math.inf).log_softmax(-1)


TIES = torch.tensor([[0.4, 0.2, 0.2, 0.2, 0.0],   # ties at the top-p / top-k boundary
                     [0.3, 0.3, 0.2, 0.1, 0.1],   # ties at the top
                     [0.25, 0.25, 0.25, 0.25, 0.0],  # a uniform row with a removed token
                     [1.0, 0.0, 0.0, 0.0, 0.0]]).log()  # one token left

TRUNCATIONS = [
    (top_k(1), lambda lp, b: keep_top_k(lp, 1)), (top_k(7), lambda lp, b: keep_top_k(lp, 7)),
    (top_k(2), lambda lp, b: keep_top_k(lp, 2)), (top_k(10_000), lambda lp, b: np.ones_like(lp, bool)),
    (top_p(0.9), lambda lp, b: keep_top_p(lp, 0.9)), (top_p(0.45), lambda lp, b: keep_top_p(lp, 0.45)),
    (top_p(0.05), lambda lp, b: keep_top_p(lp, 0.05)), (top_p(1.0), lambda lp, b: np.ones_like(lp, bool)),
    (min_p(0.1), lambda lp, b: keep_min_p(lp, 0.1)), (min_p(0.0), lambda lp, b: np.ones_like(lp, bool)),
    (min_p(1.0), lambda lp, b: keep_min_p(lp, 1.0)),
    (typical_p(0.9), lambda lp, b: keep_typical(lp, 0.9)), (typical_p(0.3), lambda lp, b: keep_typical(lp, 0.3)),
    (typical_p(1.0), lambda lp, b: np.ones_like(lp, bool)),
    (epsilon_cutoff(0.02), lambda lp, b: keep_epsilon(lp, 0.02)),
    (epsilon_cutoff(0.9), lambda lp, b: keep_epsilon(lp, 0.9)),  # empties every row: the top stays
    (eta_cutoff(0.05), lambda lp, b: keep_eta(lp, 0.05)), (eta_cutoff(0.0), lambda lp, b: np.ones_like(lp, bool)),
    (greedy(), lambda lp, b: np.arange(len(lp)) == np.argmax(lp)),
    (temperature(0), lambda lp, b: np.arange(len(lp)) == np.argmax(lp)),
]


@pytest.mark.parametrize("step,reference", TRUNCATIONS, ids=[repr(s) for s, _ in TRUNCATIONS])
def test_truncations_match_float64_reference(step, reference):
    check_rows(step, random_logprobs(1, rows=6), reference)
    check_rows(step, with_neg_inf(random_logprobs(2, rows=6)), reference)
    check_rows(step, TIES, reference)


def test_ties_are_kept_together_and_greedy_takes_the_lowest_id():
    assert torch.isfinite(Sampler(top_k(2))(TIES[:1])).tolist() == [[True] * 4 + [False]]
    assert torch.isfinite(Sampler(top_p(0.45))(TIES[:1])).tolist() == [[True] * 4 + [False]]
    assert torch.isfinite(Sampler(top_p(0.35))(TIES[:1])).tolist() == [[True] + [False] * 4]
    tied = torch.tensor([[0.0, 1.0, 3.0, 2.0, 3.0]])
    assert Sampler(greedy())(tied).argmax().item() == 2 == torch.argmax(tied).item()
    assert torch.isfinite(Sampler(greedy())(tied)).sum() == 1


def test_top_p_one_min_p_zero_and_large_k_keep_every_token_exactly():
    x = torch.tensor([[0.0, -30.0, -120.0, -200.0, -math.inf]]).log_softmax(-1)  # exp underflows in float32
    for step in (top_p(1.0), min_p(0.0), top_k(10**9), typical_p(1), epsilon_cutoff(0), eta_cutoff(0)):
        out = Sampler(step)(x)
        assert torch.isfinite(out).tolist() == [[True] * 4 + [False]], step
        torch.testing.assert_close(out, x.log_softmax(-1), rtol=0, atol=0)


def test_temperature_and_entropy_temperature():
    x = with_neg_inf(random_logprobs(3))
    check_rows(temperature(0.7), x, lambda lp, b: (np.ones_like(lp, bool), lp / 0.7))
    check_rows(temperature(2.5), x, lambda lp, b: (np.ones_like(lp, bool), lp / 2.5))
    x = random_logprobs(4, rows=3)
    for target in (0.5, 1.5, 2.5):
        out = Sampler(entropy_temperature(target))(x)
        for b in range(3):
            assert abs(np_entropy(out[b].double().numpy()) - target) < 1e-3
    step = entropy_temperature(10.0)  # above log V: the hottest end
    torch.testing.assert_close(step.temperatures(x), torch.full((3, 1), 100.0))
    torch.testing.assert_close(entropy_temperature(0).temperatures(x), torch.full((3, 1), 0.01))


def padded_state(**kw):
    # row 1 is left-padded with id 5, which must never be counted
    return SamplerState.from_lists([[1, 2, 3, 3], [4, 2]], [[3, 7, 7], [9, 9, 1]], vocab_size=V, pad_id=5, **kw)


def test_state_counts_and_generated_part():
    s = padded_state()
    assert s.generated_ids().tolist() == [[3, 7, 7], [9, 9, 1]]
    gen, every = s.counts(prompt=False), s.counts(prompt=True)
    assert gen.dtype == torch.float32 and gen.shape == (2, V)
    assert {i: gen[0, i].item() for i in gen[0].nonzero()[:, 0].tolist()} == {3: 1, 7: 2}
    assert {i: every[1, i].item() for i in every[1].nonzero()[:, 0].tolist()} == {1: 1, 2: 1, 4: 1, 9: 2}
    assert every[1, 5] == 0  # pads


def test_penalties_match_float64_reference():
    x = random_logprobs(5, rows=2, scale=3.0)
    lse = torch.tensor([[4.0], [-2.5]])  # raw logits = logprobs + lse: both signs occur
    s = padded_state(logsumexp=lse)
    ctx = [[1, 2, 3, 3, 3, 7, 7], [4, 2, 9, 9, 1]]
    gen = [[3, 7, 7], [9, 9, 1]]

    def repetition(lp, b):
        raw = lp + lse[b].item()
        hit = np.isin(np.arange(V), ctx[b])
        return np.ones(V, bool), np.where(hit, np.where(raw > 0, raw / 1.3, raw * 1.3), raw)

    def frequency(lp, b):
        return np.ones(V, bool), lp - 0.7 * np.bincount(gen[b], minlength=V)

    def presence(lp, b):
        return np.ones(V, bool), lp - 1.1 * (np.bincount(gen[b], minlength=V) > 0)

    check_rows(repetition_penalty(1.3), x, repetition, s)
    check_rows(frequency_penalty(0.7), x, frequency, s)
    check_rows(presence_penalty(1.1), x, presence, s)
    with pytest.raises(ValueError, match="needs the generation state"):
        Sampler(frequency_penalty(0.5))(x)


def test_a_chain_renormalises_after_each_step():
    x = with_neg_inf(random_logprobs(6, rows=5))
    sampler = Sampler(temperature(0.7), top_k(20), top_p(0.9), min_p(0.05))

    def chain(lp, b):
        lp = np_log_softmax(lp / 0.7)
        for keep in (lambda z: keep_top_k(z, 20), lambda z: keep_top_p(z, 0.9), lambda z: keep_min_p(z, 0.05)):
            lp = np_log_softmax(np.where(keep(lp), lp, -np.inf))
        return np.isfinite(lp), lp

    check_rows(sampler, x, chain)


# ---- Hugging Face's own warpers, on tie-free random rows ----

HF_PAIRS = [
    (temperature(0.7), hf.TemperatureLogitsWarper(0.7)), (top_k(20), hf.TopKLogitsWarper(20)),
    (top_p(0.9), hf.TopPLogitsWarper(0.9)), (top_p(0.3), hf.TopPLogitsWarper(0.3)),
    (min_p(0.1), hf.MinPLogitsWarper(0.1)), (typical_p(0.9), hf.TypicalLogitsWarper(0.9)),
    (typical_p(0.4), hf.TypicalLogitsWarper(0.4)), (epsilon_cutoff(0.02), hf.EpsilonLogitsWarper(0.02)),
    (eta_cutoff(0.05), hf.EtaLogitsWarper(0.05)),
]


def assert_same_distribution(ours, theirs):
    assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    torch.testing.assert_close(ours.softmax(-1).double(), theirs.softmax(-1).double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("step,warper", HF_PAIRS, ids=[repr(s) for s, _ in HF_PAIRS])
def test_steps_match_hugging_face_warpers(step, warper):
    g = torch.Generator().manual_seed(11)
    logits = 3 * torch.randn(8, 200, generator=g) + 5
    ours = Sampler(step)(logits.log_softmax(-1))
    theirs = warper(torch.zeros(8, 1, dtype=torch.long), logits.clone())
    assert_same_distribution(ours, theirs)


def test_repetition_penalty_matches_hugging_face_first_in_chain():
    g = torch.Generator().manual_seed(12)
    logits = 2 * torch.randn(2, V, generator=g) + torch.tensor([[1.0], [-1.0]])
    state = SamplerState.from_lists([[1, 2, 3, 3], [4, 2]], [[3, 7, 7], [9, 9, 1]], vocab_size=V, pad_id=5,
                                    logsumexp=logits.logsumexp(-1, keepdim=True))
    ours = Sampler(repetition_penalty(1.2))(logits.log_softmax(-1), state)
    pads = (~state.mask).sum(1)  # what generate passes: the left padding is not context
    theirs = hf.RepetitionPenaltyLogitsProcessor(1.2, prompt_ignore_length=pads)(state.ids, logits.clone())
    assert_same_distribution(ours, theirs)


def test_from_generation_config_matches_hugging_face_order():
    cfg = GenerationConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.2)
    sampler = Sampler.from_generation_config(cfg)
    assert repr(sampler) == "Sampler(repetition_penalty(1.2), temperature(0.7), top_k(20), top_p(0.9))"
    g = torch.Generator().manual_seed(13)
    logits = 3 * torch.randn(3, V, generator=g)
    state = SamplerState.from_lists([[1, 2, 3], [4, 5, 6], [7, 7, 7]], vocab_size=V,
                                    logsumexp=logits.logsumexp(-1, keepdim=True))
    theirs = logits.clone()
    for p in (hf.RepetitionPenaltyLogitsProcessor(1.2), hf.TemperatureLogitsWarper(0.7), hf.TopKLogitsWarper(20),
              hf.TopPLogitsWarper(0.9)):
        theirs = p(state.ids, theirs)
    assert_same_distribution(sampler(logits.log_softmax(-1), state), theirs)


def test_from_generation_config_meanings_and_refusals():
    assert repr(Sampler.from_generation_config(GenerationConfig())) == "Sampler(greedy())"
    greedy_pen = Sampler.from_generation_config(GenerationConfig(repetition_penalty=1.3, temperature=0.5))
    assert repr(greedy_pen) == "Sampler(repetition_penalty(1.3), greedy())" and greedy_pen.is_greedy
    assert repr(Sampler.from_generation_config(GenerationConfig(do_sample=True))) == "Sampler(top_k(50))"
    assert repr(Sampler.from_generation_config(GenerationConfig(do_sample=True, top_k=0, min_p=0.05))) == \
        "Sampler(min_p(0.05))"
    for name, bad in (("num_beams=4", dict(num_beams=4)), ("no_repeat_ngram_size=3", dict(no_repeat_ngram_size=3)),
                      ("penalty_alpha=0.6", dict(do_sample=True, penalty_alpha=0.6))):
        with pytest.raises(ValueError, match="cannot honour these GenerationConfig settings: " + name):
            Sampler.from_generation_config(GenerationConfig(**bad))


def test_from_options_order_and_composition():
    s = Sampler.from_options(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=0.9, epsilon_cutoff=0.001,
                             eta_cutoff=0.002, repetition_penalty=1.1, frequency_penalty=0.2, presence_penalty=0.3)
    assert repr(s) == ("Sampler(repetition_penalty(1.1), frequency_penalty(0.2), presence_penalty(0.3), "
                       "temperature(0.8), top_k(40), top_p(0.95), min_p(0.05), typical_p(0.9), "
                       "epsilon_cutoff(0.001), eta_cutoff(0.002))")
    assert repr(Sampler.from_options(temperature=0, top_p=0.9, presence_penalty=0.5)) == \
        "Sampler(presence_penalty(0.5), greedy())"
    assert repr(Sampler.from_options()) == "Sampler()" and not Sampler().is_greedy

    def ban_first(lp, state):
        lp[:, 0] = -math.inf  # writes into its argument: the Sampler's input must not change
        return lp

    s = Sampler(temperature(0.8)) | top_p(0.9) | ban_first
    assert repr(s) == "Sampler(temperature(0.8), top_p(0.9), ban_first)"
    assert repr(custom(ban_first, "no_zero") | Sampler(greedy())) == "Sampler(no_zero, greedy())"
    assert Sampler(greedy()).is_greedy and not Sampler(greedy(), ban_first).is_greedy
    x = random_logprobs(7, rows=2)
    before = x.clone()
    assert torch.isneginf(s(x)[:, 0]).all() and torch.equal(x, before)
    assert "temperature(0.8) → top_p(0.9)" in s.describe()


# ---- drawing ----

def chi_square_p(observed, expected):
    """p-value of Pearson's chi-square, bins with expected < 5 merged (regularised upper gamma)."""
    small = expected < 5
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    obs, exp = (obs, exp) if small.any() else (obs[:-1], exp[:-1])
    stat = ((obs - exp) ** 2 / exp).sum()
    return torch.special.gammaincc(torch.tensor((len(obs) - 1) / 2, dtype=torch.float64),
                                   torch.tensor(stat / 2, dtype=torch.float64)).item()


@pytest.mark.parametrize("sampler", [Sampler(temperature(0.8), top_p(0.9)), Sampler(min_p(0.02), top_k(30)),
                                     Sampler()], ids=repr)
def test_draw_frequencies_match_the_distribution(sampler):
    n = 40_000
    lp = sampler(random_logprobs(8, rows=1, scale=1.5))
    g = torch.Generator().manual_seed(2024)
    chosen = sampler.draw(lp.expand(n, V), torch.rand(n, generator=g, dtype=torch.float64))
    assert chosen.dtype == torch.int64 and chosen.shape == (n,)
    assert torch.isfinite(lp[0, chosen]).all()  # never a removed token
    probs = lp[0].double().exp().numpy()
    kept = probs > 0
    counts = np.bincount(chosen.numpy(), minlength=V)
    assert chi_square_p(counts[kept], n * probs[kept] / probs.sum()) > 1e-3


def test_draw_is_seeded_and_never_returns_a_removed_token_at_the_edges():
    sampler = Sampler(temperature(0.9), top_p(0.8))
    lp = sampler(random_logprobs(9, rows=6))

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return [sampler.draw(lp, torch.rand(6, generator=g, dtype=torch.float64)).tolist() for _ in range(20)]

    assert run(1) == run(1) and run(1) != run(2)
    edge = torch.tensor([[0.5, 0.5, 0.0, 0.0]]).log().expand(5, 4)
    u = torch.tensor([0.0, 0.5, 1 - 2**-53, 1.0, 0.9999999999999999])
    assert Sampler().draw(edge, u).tolist() == [0, 1, 1, 1, 1]
    assert Sampler().draw(torch.tensor([[-math.inf, 0.0, -math.inf]]), torch.tensor([0.0])).tolist() == [1]


# ---- mirostat, contrastive ----

def test_mirostat_v2_truncates_at_mu_and_observe_moves_it():
    step = mirostat_v2(3.0, 0.1)
    sampler = Sampler(step)
    state = SamplerState.from_lists([[0]], vocab_size=3)
    lp = sampler(torch.tensor([[0.5, 0.25, 0.25]]).log(), state)  # mu = 6 bits: every token stays
    assert step.mu(state).tolist() == [6.0] and torch.isfinite(lp).all()
    sampler.observe(state, torch.tensor([1]), lp)  # surprise 2 bits: mu = 6 - 0.1 * (2 - 3)
    assert step.mu(state).item() == pytest.approx(6.1, abs=1e-6)
    state.memory[step] = torch.tensor([1.0], dtype=torch.float64)  # keep p >= 1/2 only
    lp = sampler(torch.tensor([[0.5, 0.25, 0.25]]).log(), state)
    assert torch.isfinite(lp).tolist() == [[True, False, False]]
    sampler.observe(state, torch.tensor([0]), lp)  # final p = 1: surprise 0, mu = 1 + 0.3
    assert step.mu(state).item() == pytest.approx(1.3, abs=1e-6)
    # random rows, one mu per row
    x = random_logprobs(10, rows=4)
    mus = [0.5, 3.0, 5.0, 8.0]
    state = SamplerState.from_lists([[0]] * 4, vocab_size=V, memory={step: torch.tensor(mus, dtype=torch.float64)})
    check_rows(step, x, lambda lp, b: keep_mirostat(lp, mus[b]), state)


def test_contrastive_equals_the_formula_and_refuses_another_vocabulary():
    expert, amateur_lp = random_logprobs(11, rows=3), random_logprobs(12, rows=3)
    amateur = SimpleNamespace(vocab_size=V, name="amateur")
    seen = []

    def forward(model):
        seen.append(model)
        return amateur_lp

    state = SamplerState.from_lists([[0]] * 3, vocab_size=V, forward=forward)

    def formula(lp, b):
        a = amateur_lp[b].double().numpy()
        return keep_min_p(lp, 0.1), lp - 0.5 * a

    check_rows(contrastive(amateur, alpha=0.5, plausibility=0.1), expert, formula, state)
    assert seen == [amateur]
    with pytest.raises(ValueError, match="must share a vocabulary.*has 51 token ids and the expert 50"):
        Sampler(contrastive(SimpleNamespace(vocab_size=V + 1, name="other")))(expert, state)
    wide = SamplerState.from_lists([[0]] * 3, vocab_size=V, forward=lambda m: torch.zeros(3, V + 1))
    with pytest.raises(ValueError, match="share a vocabulary"):
        Sampler(contrastive("no-vocab-attribute"))(expert, wide)
    with pytest.raises(ValueError, match="needs state.forward"):
        Sampler(contrastive(amateur))(expert, SamplerState.from_lists([[0]] * 3, vocab_size=V))


# ---- bad input ----

@pytest.mark.parametrize("make,message", [
    (lambda: temperature(-0.5), r"temperature must be >= 0 \(0 means greedy\), got -0.5"),
    (lambda: temperature(float("nan")), "temperature must be >= 0"),
    (lambda: top_p(0), r"top_p must be in \(0, 1\] \(1 keeps every token\), got 0.0"),
    (lambda: top_p(1.5), r"top_p must be in \(0, 1\]"),
    (lambda: top_p(float("nan")), r"top_p must be in \(0, 1\]"),
    (lambda: top_p("0.9"), "top_p must be a number"),
    (lambda: top_k(0), "top_k must be an int >= 1, got 0"),
    (lambda: top_k(2.5), "top_k must be an int >= 1"),
    (lambda: min_p(1.5), r"min_p must be in \[0, 1\]"),
    (lambda: typical_p(0), r"typical_p must be in \(0, 1\]"),
    (lambda: epsilon_cutoff(1), r"epsilon_cutoff must be in \[0, 1\)"),
    (lambda: eta_cutoff(-0.1), r"eta_cutoff must be in \[0, 1\)"),
    (lambda: repetition_penalty(0), "repetition_penalty must be > 0"),
    (lambda: frequency_penalty(float("inf")), "frequency_penalty must be finite"),
    (lambda: temperature(True), "temperature must be a number"),
    (lambda: mirostat_v2(-1, 0.1), "mirostat tau must be >= 0"),
    (lambda: contrastive("m", plausibility=2), r"contrastive plausibility must be in \[0, 1\]"),
    (lambda: Sampler(0.5), "a sampler step is a step"),
])
def test_bad_settings_say_what_to_pass(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_bad_rows_name_the_row_and_the_step():
    x = random_logprobs(13, rows=3)
    nan = x.clone()
    nan[1, 4] = math.nan
    with pytest.raises(ValueError, match="row 1 of the log-probabilities given to the sampler has NaN"):
        Sampler(top_p(0.9))(nan)
    empty = x.clone()
    empty[2] = -math.inf
    with pytest.raises(ValueError, match="row 2 .* has no finite entry"):
        Sampler()(empty)

    def drop_row_0(lp, state):
        lp[0] = -math.inf
        return lp

    with pytest.raises(ValueError, match="sampler step drop_row_0 removed every token .* in row 0"):
        Sampler(top_k(5), drop_row_0, top_p(0.5))(x)
    with pytest.raises(ValueError, match="must return a tensor shaped like its input"):
        Sampler(lambda lp, s: lp[:, :3])(x)
    with pytest.raises(ValueError, match="uniforms must be"):
        Sampler().draw(x, torch.rand(2))
