"""Generation: greedy equals Hugging Face ``generate``, what you generate is what you score, the
result's text/ids/offsets hold together, seeds reproduce, stops stop, bad input is refused."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lightlens
from lightlens import sampling
from lightlens.engine.generation import eos_ids
from lightlens.engine.scoring import score_encodings
from lightlens.results.generation import Generation
from lightlens.text.tokens import Encoding

PROMPTS = ["Hello world, the cat", "The", "A dog ran far and then it", "Hello again"]


@pytest.fixture(params=["llama", "gpt2"], scope="module")
def tiny_model(request, tmp_path_factory):
    """The tiny seeded models with a context of 256, room for 64 new tokens after any prompt."""
    from conftest import save_tiny_gpt2, save_tiny_llama

    save = {"llama": save_tiny_llama, "gpt2": save_tiny_gpt2}[request.param]
    return lightlens.load(save(tmp_path_factory.mktemp(f"gen-{request.param}"), context=256))


def hf_greedy(lm, prompts: list[str], new: int, bos: bool) -> list[list[int]]:
    """Hugging Face ``generate(do_sample=False)`` on a left-padded batch; each row's new tokens
    up to and including the first end-of-sequence token."""
    tok = lm.tokenizer
    rows = [([tok.bos_token_id] if bos else []) + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    out = lm.model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new, pad_token_id=pad)
    ends = eos_ids(lm)
    result = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in ends), len(row))
        result.append(row[:cut])
    return result


def rescored(lm, g: Generation):
    """``score()`` of exactly the generated ids (never re-tokenised), written out plainly; and
    ``lm.score(g)`` gives the same."""
    ids = np.concatenate([[lm.tokenizer.bos_token_id] if g.bos else [], g.token_ids]).astype(np.int64)
    r = score_encodings(lm, [Encoding(g.text, ids, g.offsets, g.bos)], top_k=g.top_k_ids.shape[1])[0]
    assert lm.score(g, top_k=g.top_k_ids.shape[1]).to_dict() == r.to_dict()
    return r


@pytest.mark.parametrize("batched", [False, True])
def test_greedy_equals_hugging_face(tiny_model, batched):
    prompts = PROMPTS if batched else PROMPTS[:1]
    ours = tiny_model.generate(prompts, max_new_tokens=64)
    bos = ours[0].bos
    theirs = hf_greedy(tiny_model, prompts, 64, bos)
    for g, hf in zip(ours, theirs):
        assert g.completion_ids.tolist() == hf
        assert g.finish_reason == ("eos" if len(hf) < 64 else "length")


@pytest.mark.parametrize("use_cache", [True, False])
def test_what_you_generate_is_what_you_score(tiny_model, use_cache):
    sampler = sampling.Sampler.from_options(temperature=1.5, top_p=0.95)
    gs = tiny_model.generate(PROMPTS, max_new_tokens=24, sampler=sampler, seed=3, use_cache=use_cache)
    for g in gs:
        r = rescored(tiny_model, g)
        assert r.token_ids.tolist() == g.token_ids.tolist()
        np.testing.assert_allclose(g.logprobs, r.logprobs, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(g.entropy, r.entropy, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(g.logsumexp, r.logsumexp, atol=1e-4, equal_nan=True)
        assert (g.ranks == r.ranks).mean() > 0.95  # ranks may swap on float ties only
        np.testing.assert_allclose(g.top_k_logprobs, r.top_k_logprobs, atol=1e-4, equal_nan=True)


def test_result_holds_together(tiny_model):
    g = tiny_model.generate("Hello world", max_new_tokens=12, top_k=3)
    assert "".join(g.tokens) == g.text and g.text.startswith("Hello world")
    assert g.prompt == "Hello world" and g.completion == g.text[len("Hello world"):]
    for i, (a, b) in enumerate(g.offsets.tolist()):
        assert g.tokens[i] == g.text[a:b]
    assert g.generated.sum() == g.num_generated == 12
    assert g.top_k_ids.shape == (len(g), 3) and g.top_k_tokens[-1] == tiny_model.token_strings(g.top_k_ids[-1]).tolist()
    gen = g.generated
    # greedy: the chosen token is the argmax, kept alone, with probability 1 under the sampler
    assert (g.ranks[gen] == 1).all() and (g.kept[gen] == 1).all()
    assert (g.sampled_logprobs[gen] == 0).all() and np.isnan(g.sampled_logprobs[~gen]).all()
    np.testing.assert_array_equal(g.top_k_ids[gen, 0], g.token_ids[gen])


def test_prompt_scored_as_score_does(tiny_model):
    g = tiny_model.generate("A dog ran far and then it", max_new_tokens=2)
    r = tiny_model.score("A dog ran far and then it")
    p = g.num_prompt_tokens
    assert g.tokens[:p] == r.tokens
    np.testing.assert_allclose(g.logprobs[:p], r.logprobs, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(g.top_k_ids[:p], r.top_k_ids)


def test_sampled_statistics_match_the_sampler(tiny_llama):
    sampler = sampling.Sampler.from_options(temperature=0.7, top_k=20)
    g = tiny_llama.generate("Hello world", max_new_tokens=8, sampler=sampler, seed=5)
    gen = g.generated
    assert g.sampler == sampler.describe()
    assert ((g.kept[gen] >= 1) & (g.kept[gen] <= 20)).all()
    # under the sampler the chosen token is more likely than under the raw model at temperature 0.7 / top-k
    assert (g.sampled_logprobs[gen] <= 0).all() and np.isfinite(g.sampled_logprobs[gen]).all()
    assert (g.sampled_entropy[gen] <= np.log(g.kept[gen]) + 1e-5).all()


def test_seed_reproduces_alone_and_batched(tiny_llama):
    sampler = sampling.Sampler.from_options(temperature=1.0)
    a = tiny_llama.generate("Hello world", max_new_tokens=16, sampler=sampler, seed=11)
    b = tiny_llama.generate("Hello world", max_new_tokens=16, sampler=sampler, seed=11)
    batch = tiny_llama.generate(["The", "Hello world", "A dog"], max_new_tokens=16, sampler=sampler, seed=11)
    assert a.token_ids.tolist() == b.token_ids.tolist() == batch[1].token_ids.tolist()
    assert a.seed == 11
    several = tiny_llama.generate("Hello world", max_new_tokens=16, sampler=sampler, seed=11, n=3)
    assert [g.seed for g in several] == [11, 12, 13]
    assert several[0].token_ids.tolist() == a.token_ids.tolist()
    assert tiny_llama.generate("Hello world", max_new_tokens=16, sampler=sampler, seed=12).token_ids.tolist() == \
        several[1].token_ids.tolist()
    assert len({tuple(g.completion_ids.tolist()) for g in several}) > 1


def test_stream_yields_the_same_tokens(tiny_gpt2):
    sampler = sampling.Sampler.from_options(temperature=1.2, min_p=0.05)
    g = tiny_gpt2.generate("Hello", max_new_tokens=10, sampler=sampler, seed=2)
    stream = tiny_gpt2.stream("Hello", max_new_tokens=10, sampler=sampler, seed=2)
    tokens = list(stream)
    assert stream.generations[0].to_dict() == g.to_dict()  # the stream ends with the same Generation
    assert [t.token_id for t in tokens] == g.completion_ids.tolist()
    assert "".join(t.text for t in tokens) == g.completion
    assert tokens[-1].finish_reason == g.finish_reason and all(t.finish_reason is None for t in tokens[:-1])
    np.testing.assert_allclose([t.sampled_logprob for t in tokens], g.sampled_logprobs[g.generated], atol=1e-6)
    assert tokens[0].top_k_tokens == g.top_k_tokens[g.num_prompt_tokens]


def test_stop_string_and_eos(tiny_llama):
    free = tiny_llama.generate("Hello world", max_new_tokens=30)
    piece = free.completion[5:8]
    assert piece
    g = tiny_llama.generate("Hello world", max_new_tokens=30, stop=[piece])
    assert g.finish_reason == "stop" and piece in g.completion
    assert piece not in g.completion[: len(g.completion) - len(g.tokens[-1])]  # the last token completed it
    assert g.completion_ids.tolist() == free.completion_ids[: g.num_generated].tolist()
    # a model told that its 3rd greedy token is end-of-sequence stops there, keeping it
    eos = int(free.completion_ids[2])
    cfg = tiny_llama.model.generation_config
    old = cfg.eos_token_id
    cfg.eos_token_id = eos
    try:
        e = tiny_llama.generate("Hello world", max_new_tokens=30)
    finally:
        cfg.eos_token_id = old
    first = free.completion_ids.tolist().index(eos)
    assert e.finish_reason == "eos" and e.num_generated == first + 1 and e.completion_ids[-1] == eos


def test_context_fills(tmp_path):
    from conftest import save_tiny_llama

    lm = lightlens.load(save_tiny_llama(tmp_path / "short", context=16))
    with pytest.warns(UserWarning, match="context"):
        g = lm.generate("Hello world", max_new_tokens=40)
    assert g.finish_reason == "context" and len(g) + int(g.bos) == 16


def test_save_and_load(tiny_gpt2, tmp_path):
    g = tiny_gpt2.generate("Hello", max_new_tokens=5, sampler=sampling.Sampler.from_options(temperature=0.9), seed=1)
    for name in ("g.json", "g.parquet"):
        back = Generation.load(g.save(tmp_path / name))
        assert isinstance(back, Generation) and back.completion == g.completion and back.seed == 1
        np.testing.assert_array_equal(back.kept, g.kept)
        np.testing.assert_array_equal(back.sampled_logprobs, g.sampled_logprobs)
        assert back.num_prompt_tokens == g.num_prompt_tokens and back.sampler == g.sampler
        assert isinstance(lightlens.ScoreResult.load(tmp_path / name), Generation)  # a Generation is a ScoreResult
    with pytest.raises(ValueError, match="Generation"):
        Generation.load(tiny_gpt2.score("Hello there").save(tmp_path / "s.json"))
    df = g.to_pandas()
    assert len(df) == len(g) and df["generated"].sum() == 5 and df["kept"].iloc[-1] >= 1


def test_zero_new_tokens_scores_the_prompt(tiny_gpt2):
    g = tiny_gpt2.generate("Hello world", max_new_tokens=0)
    assert g.num_generated == 0 and g.completion == "" and g.text == "Hello world"


@pytest.mark.parametrize("options, message", [
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(stop=[""]), "stop strings must be non-empty"),
    (dict(sampler="hot"), "sampler must be"),
    (dict(n=0), "n must be"),
    (dict(top_k=65), "top_k"),
])
def test_bad_options(tiny_gpt2, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_gpt2.generate("Hello", **options)


def test_prompt_longer_than_the_context(tiny_gpt2):
    with pytest.raises(ValueError, match="shorten the prompt"):
        tiny_gpt2.generate("Hello world " * 80, max_new_tokens=1)


def test_temperature_must_not_be_negative():
    with pytest.raises(ValueError, match="temperature"):
        sampling.Sampler.from_options(temperature=-1)


def test_greedy_on_the_real_model(smollm2):
    prompts = ["The capital of France is", "Once upon a time, in a small village,", "def fibonacci(n):",
               "Water boils at"]
    single = smollm2.generate(prompts[1], max_new_tokens=64)
    assert single.completion_ids.tolist() == hf_greedy(smollm2, prompts[1:2], 64, single.bos)[0]
    batch = smollm2.generate(prompts, max_new_tokens=64)
    for g, hf in zip(batch, hf_greedy(smollm2, prompts, 64, single.bos)):
        assert g.completion_ids.tolist() == hf
        r = rescored(smollm2, g)
        np.testing.assert_allclose(g.logprobs, r.logprobs, atol=1e-4, equal_nan=True)


def test_branch_continues_from_an_alternative(tiny_llama):
    g = tiny_llama.generate("Hello world", max_new_tokens=8)
    at = g.num_prompt_tokens + 2
    alt = int(g.top_k_ids[at, 1])
    b = tiny_llama.branch(g, at, alt, max_new_tokens=5)
    assert b.token_ids[:at].tolist() == g.token_ids[:at].tolist() and b.token_ids[at] == alt
    assert b.num_prompt_tokens == at + 1 and b.num_generated == 5
    assert b.text.startswith(g.text[: g.offsets[at, 0]]) and "".join(b.tokens) == b.text
    # the alternative's logprob in the branch is the one g listed for it
    np.testing.assert_allclose(b.logprobs[at], g.top_k_logprobs[at, 1], atol=1e-5)
    np.testing.assert_allclose(b.logprobs, rescored(tiny_llama, b).logprobs, atol=1e-4, equal_nan=True)
    with pytest.raises(ValueError, match="past the end"):
        tiny_llama.branch(g, len(g), alt)


def test_contrastive_decoding_runs_the_amateur(tiny_llama, tiny_gpt2):
    # the expert against itself: every plausible token scores 0, so the draw is uniform over them
    same = sampling.Sampler(sampling.contrastive(tiny_llama, alpha=1.0, plausibility=0.1))
    g = tiny_llama.generate("Hello world", max_new_tokens=6, sampler=same, seed=0)
    gen = g.generated
    np.testing.assert_allclose(g.sampled_logprobs[gen], -np.log(g.kept[gen]), atol=1e-5)
    # another copy of the weights with fewer layers as the amateur: its cache follows the batch
    amateur = copy.deepcopy(tiny_llama)  # lightlens.load(llama_dir) is the shared, cached model: never cut it
    amateur.model.model.layers = amateur.model.model.layers[:1]
    amateur.model.config.num_hidden_layers = 1
    cd = sampling.Sampler(sampling.contrastive(amateur, alpha=0.5, plausibility=0.05))
    cached = tiny_llama.generate(PROMPTS[:3], max_new_tokens=8, sampler=cd, seed=4)
    fresh = tiny_llama.generate(PROMPTS[:3], max_new_tokens=8, sampler=cd, seed=4, use_cache=False)
    assert [g.token_ids.tolist() for g in cached] == [g.token_ids.tolist() for g in fresh]
    with pytest.raises(ValueError, match="vocabulary"):
        tiny_llama.generate("Hello", max_new_tokens=2,
                            sampler=sampling.Sampler(sampling.contrastive(tiny_gpt2)))


@pytest.mark.parametrize("tau", [3.0, 5.0])
def test_mirostat_holds_its_target(smollm2, tau):
    eos = torch.tensor(sorted(eos_ids(smollm2)))
    no_eos = sampling.custom(lambda lp, state: lp.index_fill(1, eos, float("-inf")), name="no_eos")
    sampler = sampling.Sampler(no_eos, sampling.mirostat_v2(tau, 0.1))
    g = smollm2.generate("The history of the city begins", max_new_tokens=256, sampler=sampler, seed=0)
    assert g.num_generated == 256
    assert abs(g.surprise_bits.mean() - tau) < 0.1 * tau


def test_cli_generate_prints_each_token_and_json(gpt2_dir):
    import json
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lightlens", "generate", *args, "--model", str(gpt2_dir)],
                              capture_output=True, text=True, timeout=300)

    out = run("Hello world", "--max-new-tokens", "5", "--temperature", "0.8", "--top-p", "0.9", "--seed", "1",
              "--json")
    assert out.returncode == 0, out.stderr
    g = Generation.from_dict(json.loads(out.stdout))
    want = lightlens.generate("Hello world", model=gpt2_dir, max_new_tokens=5, seed=1,
                              sampler=sampling.Sampler.from_options(temperature=0.8, top_p=0.9))
    assert g.token_ids.tolist() == want.token_ids.tolist() and g.seed == 1 and "top_p(0.9)" in g.sampler
    table = run("Hello world", "--max-new-tokens", "4")
    assert table.returncode == 0, table.stderr
    assert "sampled" in table.stdout and "4 tokens generated (length) by greedy" in table.stdout
    assert len([line for line in table.stdout.splitlines() if line[:5].strip().isdigit()]) == 4
    bad = run("Hello", "--top-p", "1.5")
    assert bad.returncode == 1 and "top_p must be in (0, 1]" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.parametrize("kind", ["vllm", "tgi", "openai", "llamacpp"])
def test_server_generation_is_a_generation(kind, tmp_path):
    from lightlens.remote import RemoteModel
    from lightlens.testing import MockServer
    from lightlens.testing.mock_server import word_scorer

    with MockServer(kind, word_scorer) as server:
        m = RemoteModel(kind, server.url, model_name="mock")
        g = lightlens.generate("The cat sat on the mat.", model=f"{kind}+{server.url}?model=mock", max_new_tokens=4,
                               top_k=2)
        tokens = m.generate_tokens("The cat sat on the mat.", max_new_tokens=4, top_k=2)
        with pytest.raises(ValueError, match="sampler runs in this process"):
            m.generate("Hi", sampler=sampling.Sampler.from_options(temperature=0.5))
        with pytest.raises(ValueError, match="every completion would be the same"):
            m.generate("Hi", n=2)
    assert isinstance(g, Generation) and g.sampler == "greedy (server)"
    assert g.completion == tokens.text and g.text == "The cat sat on the mat." + tokens.text
    assert g.tokens[g.num_prompt_tokens:] == tokens.pieces and "".join(g.tokens) == g.text
    np.testing.assert_allclose(g.logprobs[g.generated], tokens.logprobs)
    assert (g.ranks[g.generated] == 1).all()  # greedy: each token heads the server's top-k
    if kind == "llamacpp":  # no prompt logprobs from llama-server: the prompt is one unscored piece
        assert g.num_prompt_tokens == 1 and np.isnan(g.logprobs[0])
    else:
        assert g.num_prompt_tokens == 6 and np.isfinite(g.logprobs[1:6]).all()
    assert Generation.load(g.save(tmp_path / "g.json")).completion == g.completion


def test_a_batch_outlives_a_row_that_fills_the_context(tiny_model):
    """One prompt fills the context while a short one goes on: the long row ends with "context",
    the short one runs to max_new_tokens, each as it would alone (the batch keeps growing)."""
    long_prompt = " ".join(["Hello world, the cat sat on the mat."] * 40)
    ids = tiny_model.tokenizer(long_prompt, add_special_tokens=False)["input_ids"]
    room = 10
    long_prompt = tiny_model.tokenizer.decode(ids[: tiny_model.context_length - room - 1])
    with pytest.warns(UserWarning, match="context"):
        both = tiny_model.generate([long_prompt, "A"], max_new_tokens=40)
    with pytest.warns(UserWarning, match="context"):
        alone = tiny_model.generate(long_prompt, max_new_tokens=40)
    short = tiny_model.generate("A", max_new_tokens=40)
    assert both[0].finish_reason == "context" and len(both[0]) + int(both[0].bos) == tiny_model.context_length
    assert both[0].completion_ids.tolist() == alone.completion_ids.tolist()
    assert both[1].finish_reason == "length" and both[1].num_generated == 40
    assert both[1].completion_ids.tolist() == short.completion_ids.tolist()
    np.testing.assert_allclose(both[1].logprobs, rescored(tiny_model, both[1]).logprobs, atol=1e-4, equal_nan=True)


def test_stream_index_counts_across_batches(tiny_gpt2):
    tokens = list(tiny_gpt2.stream(["Hello", "The cat", "A dog"], max_new_tokens=2, batch_size=2))
    assert sorted({t.index for t in tokens}) == [0, 1, 2] and [t.index for t in tokens][-2:] == [2, 2]


def test_uncalled_step_factory_is_named(tiny_gpt2):
    with pytest.raises(TypeError, match=r"sampling.top_p\(0.9\)"):
        tiny_gpt2.generate("Hello", sampler=sampling.top_p)
    with pytest.raises(ValueError, match="stop must be a string"):
        tiny_gpt2.generate("Hello", stop=5)


def test_generated_frequencies_match_the_samplers_distribution(tiny_llama):
    """20,000 one-token generations (one batch, each row its own seeded stream) are distributed
    as temperature 1.5 then top-20 of the model's next-token distribution, computed plainly."""
    from test_sampling import chi_square_p

    n = 20_000
    sampler = sampling.Sampler.from_options(temperature=1.5, top_k=20)
    gs = tiny_llama.generate("Hello world", max_new_tokens=1, sampler=sampler, seed=0, n=n, batch_size=n, top_k=0)
    drawn = np.array([g.completion_ids[0] for g in gs])
    g0 = gs[0]
    ids = torch.tensor([([tiny_llama.tokenizer.bos_token_id] if g0.bos else [])
                        + g0.token_ids[: g0.num_prompt_tokens].tolist()])
    with torch.no_grad():
        logits = tiny_llama.model(ids).logits[0, -1].double().numpy()
    x = logits / 1.5
    keep = x >= np.sort(x)[-20]
    p = np.where(keep, np.exp(x - x.max()), 0.0)
    p /= p.sum()
    assert keep[drawn].all()
    counts = np.bincount(drawn, minlength=len(p))[keep]
    assert chi_square_p(counts, p[keep] * n) > 1e-3


def test_a_stream_closed_early_keeps_what_it_generated(tiny_llama):
    stream = tiny_llama.stream(["Hello", "The cat"], max_new_tokens=10)
    taken = [next(stream) for _ in range(6)]  # 3 steps of 2 rows
    stream.close()
    full = tiny_llama.generate(["Hello", "The cat"], max_new_tokens=10)
    assert [g.finish_reason for g in stream.generations] == ["interrupted", "interrupted"]
    for i, g in enumerate(stream.generations):
        mine = [t.token_id for t in taken if t.index == i]
        assert g.completion_ids.tolist() == mine == full[i].completion_ids[: len(mine)].tolist()


@pytest.mark.parametrize("args, message", [
    (["--max-new-tokens", "-1"], "--max-new-tokens must be an int >= 0"),
    (["--retries", "1"], "--retries and --timeout are for a server model"),
    (["--top-p", "2"], "top_p must be in (0, 1]"),
])
def test_cli_generate_errors_are_one_line(gpt2_dir, args, message):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lightlens", "generate", "Hi", "--model", str(gpt2_dir), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1
