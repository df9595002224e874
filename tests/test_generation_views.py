"""Views of a generation: the heatmap (prompt end, the sampler's view in every generated token's
tooltip, escaping, split characters), the step plots (mirostat's target), the live view (a stream
consumed, the same Generation as generate, the heatmap's colours) and the branch explorer."""
from __future__ import annotations

import html as htmllib
import math
import re

import matplotlib
import numpy as np
import pytest

import lightlens
from lightlens import sampling
from lightlens.results.generation import Generation
from lightlens.viz.generation import generation_html, mirostat_target, stream_html, token_span
from lightlens.widgets import BranchExplorer, LiveGeneration, live
from lightlens.widgets import stream as stream_module

matplotlib.use("Agg")

PROMPT = "Hello world, the cat"
TOP_P = sampling.Sampler.from_options(temperature=1.5, top_p=0.95)


def spans(html: str) -> list[tuple[str, str, str]]:
    """(classes, background or "", tooltip) of every token span, in order."""
    return re.findall(r"<span class='(ll-t[^']*)'(?: style='(?:background:(#[0-9a-f]{6}))?[^']*')? "
                      r"data-tip='([^']*)'>", html)


def shown_text(html: str) -> str:
    """What a reader sees in the text box: markers and tags removed, entities decoded."""
    body = re.split(r"<div class='ll-text[^']*'>", html, maxsplit=1)[1].rsplit("</div></div>", 1)[0]
    body = re.sub(r"<span class='ll-ws'>[^<]*</span>", "", body)
    return htmllib.unescape(re.sub(r"<[^>]+>", "", body))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def visible(g) -> list[int]:
    """The token indices that have a span (a byte-piece a later token completes has none)."""
    return [i for i, t in enumerate(g.tokens) if t]


@pytest.fixture(scope="module")
def sampled(tiny_model):
    return tiny_model.generate(PROMPT, max_new_tokens=16, sampler=TOP_P, seed=3)


def synthetic() -> Generation:
    """A hand-made generation: HTML in the prompt and the completion, and an emoji generated as
    three byte-pieces (two cover no characters)."""
    tokens = ["<b>", " & ", "it", "'s", "", "", "😀", " <i>"]
    ends = np.cumsum([len(t) for t in tokens])
    n, k, m = len(tokens), 3, 3
    rng = np.random.default_rng(0)
    lp = -rng.uniform(0.1, 3, n)
    lp[0] = np.nan
    top = np.sort(-rng.uniform(0.05, 3, (n, k)), axis=1)[:, ::-1]
    starts = ends - [len(t) for t in tokens]
    return Generation(
        text="".join(tokens), tokens=tokens, token_ids=np.arange(10, 10 + n), offsets=np.stack([starts, ends], 1),
        logprobs=lp, entropy=rng.uniform(0, 4, n), ranks=np.r_[0, rng.integers(1, 9, n - 1)],
        top_k_ids=rng.integers(0, 50, (n, k)), top_k_logprobs=top, top_k_tokens=[["'a'", "<x>", "b"]] * n,
        model={"name": "<synthetic>"}, num_prompt_tokens=m, sampled_logprobs=np.r_[[np.nan] * m, -rng.uniform(0, 1, n - m)],
        sampled_entropy=np.r_[[np.nan] * m, [1.0] * (n - m)], kept=np.r_[[0] * m, 3, 1, 2, 7, 40],
        finish_reason="stop", sampler="top_p(0.9) <custom>", seed=5)


# ---- heatmap --------------------------------------------------------------------------------
def test_one_span_and_tooltip_per_token_and_the_prompt_end_marked(sampled):
    g = sampled
    html = g._repr_html_()
    found = spans(html)
    assert len(found) == html.count("data-tip=") == len(visible(g))
    assert html.count("class='ll-pe'") == 1 and "data-label='generated ▸'" in html
    # the marker stands between the last prompt token and the first generated one
    before, after = html.split("class='ll-pe'")
    assert len(spans(before)) == sum(1 for i in visible(g) if i < g.num_prompt_tokens)
    assert all("ll-pr" in cls for cls, _, _ in spans(before)) and not any("ll-pr" in cls for cls, _, _ in spans(after))
    assert "font-style:italic" in before.rsplit("<div class='ll-text", 1)[1]  # prompt tokens look different
    assert f"sampler <b>{htmllib.escape(g.sampler)}</b>" in html and f"seed <b>{g.seed}</b>" in html
    assert f"finish <b>{g.finish_reason}</b>" in html
    assert f"{g.num_prompt_tokens} prompt + {g.num_generated} generated tokens" in html
    assert "<script" not in html and "http" not in html and shown_text(html) == g.text


def test_generated_tooltips_show_the_sampler_and_the_model(sampled):
    g = sampled
    tips = dict(zip(visible(g), (htmllib.unescape(t) for _, _, t in spans(g._repr_html_()))))
    as_score = score_tips(g)
    for i, tip in tips.items():
        if i < g.num_prompt_tokens:  # as a ScoreResult shows it
            assert "sampled" not in tip and "kept" not in tip and tip == as_score[i]
            continue
        if not g.tokens[i - 1] and i - 1 >= g.num_prompt_tokens:
            continue  # completes a split character: checked on the synthetic generation
        assert f"logprob {g.logprobs[i]:.3f}   p {math.exp(g.logprobs[i]):.4f}" in tip  # raw
        assert f"sampled p {math.exp(g.sampled_logprobs[i]):.4f}" in tip and f"kept {g.kept[i]}" in tip
        assert f"rank {g.ranks[i]}   entropy {g.entropy[i]:.3f} nats" in tip
        assert f"sampled entropy {max(0.0, float(g.sampled_entropy[i])):.3f} nats   step {i - g.num_prompt_tokens}" in tip
        assert "top alternatives:" in tip and repr(g.top_k_tokens[i][0]) in tip


def score_tips(g) -> dict[int, str]:
    """Each token's tooltip in the heatmap of a ScoreResult with the same arrays."""
    fields = ("text", "tokens", "token_ids", "offsets", "logprobs", "entropy", "ranks", "top_k_ids", "top_k_logprobs",
              "top_k_tokens", "model", "window", "bos", "logsumexp")
    r = lightlens.ScoreResult(**{f: getattr(g, f) for f in fields})
    return dict(zip(visible(r), (htmllib.unescape(t) for _, _, t in spans(r._repr_html_()))))


def test_text_and_tooltips_are_escaped_and_split_characters_are_one_token():
    g = synthetic()
    html = g.heatmap()._repr_html_()
    text_box = html.split("<div class='ll-text")[1]
    assert "<i>" not in text_box and "<b>" not in text_box and "&lt;i&gt;" in text_box and shown_text(html) == g.text
    assert "<b>&lt;synthetic&gt;</b>" in html and "top_p(0.9) &lt;custom&gt;" in html
    found = spans(html)
    assert len(found) == len(visible(g)) == 6  # the emoji's three pieces are one token on screen
    emoji = htmllib.unescape(found[4][2])
    assert "3 byte-pieces" in emoji and "kept 1/2/7" in emoji and "step 1" in emoji
    assert f"sampled p {math.exp(g.sampled_logprobs[4:7].astype(np.float64).sum()):.4f}" in emoji
    assert "'<x>'" in emoji and "<x>" not in found[4][2]  # alternatives escaped in the attribute


@pytest.mark.parametrize("metric", ["kept", "sampled_logprob"])
def test_sampler_metrics_colour_only_generated_tokens(sampled, metric):
    g = sampled
    found = spans(g.heatmap(metric=metric)._repr_html_())
    coloured = [i for i, (_, bg, _) in zip(visible(g), found) if bg]
    assert coloured == [i for i in visible(g) if i >= g.num_prompt_tokens]
    with pytest.raises(ValueError, match="choose one of"):
        g.heatmap(metric="vibes")


def test_start_and_mark_show_a_part_with_its_branch_point(sampled):
    g = sampled
    start, mark = 2, g.num_prompt_tokens + 1
    html = generation_html(g, start=start, mark=mark, label="branch ▸")
    assert html.count("data-tip=") == len([i for i in visible(g) if i >= start]) and "… </span>" in html
    before = html.split("class='ll-pe'")[0]
    assert len(spans(before)) == len([i for i in visible(g) if start <= i < mark]) and "data-label='branch ▸'" in html


def test_a_generation_of_no_tokens_marks_the_end(tiny_model):
    g = tiny_model.generate(PROMPT, max_new_tokens=0)
    html = g._repr_html_()
    assert html.count("class='ll-pe'") == 1 and html.index("class='ll-pe'") > html.rindex("data-tip=")
    assert "completion perplexity <b>–</b>" in html


# ---- plots ----------------------------------------------------------------------------------
def test_plot_draws_entropy_and_probability_per_step(sampled):
    fig = sampled.plot()
    a, b = fig.axes
    assert a.get_ylabel() == "entropy (bits)" and b.get_ylabel() == "p of the chosen token"
    raw, final = a.lines
    np.testing.assert_allclose(raw.get_ydata(), sampled.entropy[sampled.generated] / math.log(2), rtol=1e-6)
    np.testing.assert_allclose(final.get_ydata(), sampled.sampled_entropy[sampled.generated] / math.log(2), rtol=1e-6)
    np.testing.assert_allclose(b.lines[1].get_ydata(), np.exp(sampled.sampled_logprobs[sampled.generated]), rtol=1e-6)
    assert len(b.get_xticklabels()) == sampled.num_generated  # the tokens label the steps
    assert sampled.plot("step_entropy", unit="nats").get_ylabel() == "entropy (nats)"
    with pytest.raises(ValueError, match="bits"):
        sampled.plot("step_entropy", unit="dB")


def test_scoreresult_plots_still_work_and_unknown_kinds_are_named(sampled):
    assert sampled.plot("logprob").get_ylabel() == "log-probability (nats)"
    assert sampled.plot("rank").patches
    with pytest.raises(ValueError, match="logprob.*generation, step_entropy, step_prob, surprise"):
        sampled.plot("pie")


def test_mirostat_plot_has_its_target_and_running_mean(tiny_model):
    g = tiny_model.generate(PROMPT, max_new_tokens=12, sampler=sampling.mirostat_v2(3.0, 0.5), seed=1)
    fig = g.plot()
    assert len(fig.axes) == 3
    ax = fig.axes[2]
    surprise, mean, target = ax.lines
    assert ax.get_ylabel() == "surprise (bits)" and target.get_label() == "target τ = 3 bits"
    assert set(target.get_ydata()) == {3.0}
    np.testing.assert_allclose(surprise.get_ydata(), g.surprise_bits, rtol=1e-6)
    np.testing.assert_allclose(mean.get_ydata()[-1], g.surprise_bits.astype(np.float64).mean(), rtol=1e-6)
    # another sampler: a target only when asked for
    other = tiny_model.generate(PROMPT, max_new_tokens=4, sampler=TOP_P, seed=1)
    assert len(other.plot().axes) == 2 and len(other.plot(target=2.5).axes) == 3


def test_mirostat_target_is_read_from_the_description():
    assert mirostat_target("mirostat_v2(5, 0.1)") == 5.0
    assert mirostat_target("no_eos → mirostat_v2(2.5, 0.2), renormalised after each step") == 2.5
    assert mirostat_target("temperature(0.8) → top_p(0.9), renormalised after each step") is None


# ---- live view ------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", [None, TOP_P], ids=["greedy", "top_p"])
def test_live_view_ends_with_what_generate_gives(tiny_model, sampler):
    view = LiveGeneration(tiny_model, PROMPT, max_new_tokens=12, sampler=sampler, seed=4)
    g = view.run()  # no notebook here: the stream is consumed, nothing displayed
    ref = tiny_model.generate(PROMPT, max_new_tokens=12, sampler=sampler, seed=4)
    assert g.token_ids.tolist() == ref.token_ids.tolist() and g.tokens == ref.tokens and g.text == ref.text
    for name in ("logprobs", "entropy", "ranks", "top_k_ids", "top_k_logprobs", "sampled_logprobs", "kept",
                 "sampled_entropy", "offsets", "logsumexp"):
        assert np.array_equal(getattr(g, name), getattr(ref, name), equal_nan=True), name
    assert (g.sampler, g.seed, g.finish_reason, g.num_prompt_tokens) == (ref.sampler, 4, ref.finish_reason,
                                                                         ref.num_prompt_tokens)
    assert g.top_k_tokens == ref.top_k_tokens and view.generation is g and len(view.tokens) == g.num_generated
    assert view.widget.value == generation_html(g)  # the view ends as the heatmap


def test_live_colours_each_token_as_the_heatmap_does(tiny_model):
    view = LiveGeneration(tiny_model, PROMPT, max_new_tokens=10, sampler=TOP_P, seed=2)
    g = view.run()
    heat = dict(zip(visible(g), spans(g._repr_html_())))
    for t in view.tokens:
        if not t.text:
            continue
        i = g.num_prompt_tokens + t.step
        (_, bg, tip), = spans(token_span(t))
        if g.tokens[i - 1]:  # a whole token (a split character's colour merges its pieces)
            assert (bg, tip) == heat[i][1:]


def test_live_redraws_while_tokens_arrive_in_a_notebook(tiny_model, monkeypatch):
    shown = []
    monkeypatch.setattr(stream_module, "in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda w: shown.append(w))
    view = LiveGeneration(tiny_model, PROMPT, max_new_tokens=6, every=0)
    values = []
    view.widget.observe(lambda change: values.append(change["new"]), names="value")
    g = view.run()
    assert shown == [view.widget]
    assert len(values) == 7 and all("generating…" in v for v in values[:-1]) and values[-1] == generation_html(g)
    assert [v.count("data-tip=") for v in values[:-1]] == [1 + n for n in range(1, 7)]  # prompt + tokens so far
    assert "ll-pe" in values[0] and "<script" not in values[0]


@pytest.mark.parametrize("metric", ["logprob", "prob", "surprisal", "entropy", "rank", "kept", "sampled_logprob"])
def test_live_view_takes_every_heatmap_metric(tiny_llama, metric):
    view = LiveGeneration(tiny_llama, PROMPT, max_new_tokens=3, sampler=TOP_P, seed=0, metric=metric)
    assert "ll-pe" in view.widget.value
    g = view.run()
    assert all(re.search(r"background:#[0-9a-f]{6}", token_span(t, metric=metric)) for t in view.tokens if t.text)
    assert view.widget.value == generation_html(g, metric=metric)


def test_live_function_and_bad_prompt(tiny_model):
    assert live(tiny_model, PROMPT, max_new_tokens=3).num_generated == 3
    with pytest.raises(TypeError, match="one prompt"):
        LiveGeneration(tiny_model, [PROMPT, PROMPT])
    assert "ll-pe" in stream_html("<b>", [], status="x") and "&lt;b&gt;" in stream_html("<b>", [], status="x")


# ---- branch explorer ------------------------------------------------------------------------
def test_branch_from_an_alternative_and_compare_totals(tiny_llama):
    root = tiny_llama.generate(PROMPT, max_new_tokens=10)
    app = BranchExplorer(tiny_llama, root)
    at = root.num_prompt_tokens + 3
    app.position.value = at  # what the dropdown does
    alternatives = [tid for _, tid in app.alternative.options]
    assert root.token_ids[at] not in alternatives and set(alternatives) <= set(root.top_k_ids[at].tolist())
    assert app.alternative.value == alternatives[0]
    b = app.branch()  # the controls' choice
    g = b.generation
    assert (b.position, b.token_id) == (at, alternatives[0]) and g.token_ids[at] == alternatives[0]
    assert g.token_ids[:at].tolist() == root.token_ids[:at].tolist()
    assert b.num_after == len(root) - at  # as many tokens as the root has from there
    listed = root.top_k_logprobs[at][root.top_k_ids[at] == b.token_id][0]
    np.testing.assert_allclose(g.logprobs[at], listed, atol=1e-5)
    second = app.branch(root.num_prompt_tokens, int(root.top_k_ids[root.num_prompt_tokens, 2]))
    t = app.table()
    assert len(t) == 2 and list(t["step"]) == [3, 0] and list(t["tokens after"]) == [b.num_after, second.num_after]
    np.testing.assert_allclose(t["total logprob"], [b.total_logprob, second.total_logprob])
    np.testing.assert_allclose(t["total logprob"][0], g.logprobs[at:].astype(np.float64).sum())
    np.testing.assert_allclose(t["root total logprob"][0], root.logprobs[at:].astype(np.float64).sum())
    cards = app.cards.value
    assert cards.count("class='ll-card'") == 3 and cards.count("data-label='branch ▸'") == 3
    assert f"total logprob <b>{b.total_logprob:.3f}</b>" in cards and "per token: " in cards
    assert f"{g.logprobs[at]:.2f}" in cards.split("branch 1")[1].split("per token: ")[1][:40]
    assert "<table" in app.summary.value


def test_branch_explorer_from_a_prompt_and_its_errors(tiny_llama):
    app = BranchExplorer(tiny_llama, PROMPT, max_new_tokens=5, branch_tokens=2)
    assert app.root.num_generated == 5
    b = app.branch(app.root.num_prompt_tokens + 4, int(app.root.top_k_ids[-1, 1]))
    assert b.generation.num_generated == 2
    with pytest.raises(ValueError, match="not a generated token"):
        app.select(0)
    app.alternative.options = []
    app._branch_clicked()  # the button: an error becomes a message, the app stays alive
    assert "pick an alternative" in app.message.value and app.button.description == "Branch"
    with pytest.raises(ValueError, match="no generated token"):
        BranchExplorer(tiny_llama, tiny_llama.generate(PROMPT, max_new_tokens=0))
