"""Heatmap HTML and plots, on results of the tiny model (no network, no JavaScript)."""
from __future__ import annotations

import math
import re
import time

import matplotlib
import numpy as np
import pytest

import lightlens
from lightlens.viz import heatmap_html, rank_buckets, windowed_perplexity

matplotlib.use("Agg")

TEXT = "Hello <script>alert('x')</script> world &amp; more\nnext line\tand a tab 😀"


@pytest.fixture(scope="module")
def result(tiny_gpt2):
    return lightlens.score(TEXT, model=tiny_gpt2, top_k=5)


def spans(html):
    return re.findall(r"<span class='ll-t[^']*'(?: style='background:(#[0-9a-f]{6})')? data-tip='([^']*)'>", html)


def shown_text(html):
    """What a reader sees in the text box: markers and tags removed, entities decoded."""
    import html as htmllib

    body = re.split(r"<div class='ll-text[^']*'>", html, maxsplit=1)[1].rsplit("</div></div>", 1)[0]
    body = re.sub(r"<span class='ll-ws'>[^<]*</span>", "", body)
    return htmllib.unescape(re.sub(r"<[^>]+>", "", body))


def test_text_is_escaped_never_run(result):
    html = result._repr_html_()
    assert "<script" not in html.lower() and "onerror" not in html
    assert shown_text(html) == TEXT  # shown exactly as typed, "&amp;" and "<script>" included


@pytest.mark.parametrize("metric", ["logprob", "prob", "surprisal", "entropy", "rank"])
def test_every_scored_token_is_coloured(result, metric):
    html = heatmap_html(result, metric=metric)
    found = spans(html)
    visible = [t for t in result.tokens if t]
    assert len(found) == len(visible)
    colours = [c for c, _ in found if c]
    assert len(colours) == sum(1 for i, t in enumerate(result.tokens) if t and result.scored[i])
    assert len(set(colours)) > 1 or metric == "rank"
    assert "http" not in html and "require" not in html  # no CDN, no requirejs


def test_colour_follows_the_metric(result):
    html = heatmap_html(result, metric="prob", cmap="Greys", vmin=0, vmax=1)
    found = [(c, i) for (c, _), i in zip(spans(html), [i for i, t in enumerate(result.tokens) if t]) if c]
    lum = {i: sum(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c, i in found}
    probs = {i: result.probs[i] for _, i in found}
    lo, hi = min(probs, key=probs.get), max(probs, key=probs.get)
    assert lum[hi] < lum[lo]  # Greys: more probable is darker


def test_tooltip_has_details_and_top_k(result):
    i = int(np.nanargmin(result.logprobs))
    tip = dict(zip([j for j, t in enumerate(result.tokens) if t], [t for _, t in spans(result._repr_html_())]))[i]
    assert f"{result.logprobs[i]:.3f}" in tip and f"rank {result.ranks[i]}" in tip
    assert "top alternatives" in tip and "entropy" in tip


def test_newlines_and_tabs_are_visible(result):
    html = result._repr_html_()
    assert "↵</span>\n" in html and "→</span>\t" in html


def test_threshold_outlines_surprising_tokens(result):
    bits = result.surprisal_bits
    cut = float(np.nanmedian(bits))
    html = heatmap_html(result, threshold=cut)
    assert html.count("ll-hi'") == int(np.sum(bits[[bool(t) for t in result.tokens]] >= cut))


def test_unknown_metric_is_a_clear_error(result):
    with pytest.raises(ValueError, match="choose one of"):
        result.heatmap(metric="vibes")


def test_large_result_renders_fast_and_small(tiny_gpt2):
    rng = np.random.default_rng(0)
    n, k = 4096, 5
    pieces = list(rng.choice(["the", " cat", " sat", "\n", " on", " mat", "."], n))
    ends = np.cumsum([len(p) for p in pieces])
    r = lightlens.ScoreResult(
        text="".join(pieces), tokens=pieces, token_ids=np.arange(n),
        offsets=np.stack([ends - [len(p) for p in pieces], ends], axis=-1),
        logprobs=-rng.exponential(3, n), entropy=rng.uniform(0, 5, n), ranks=rng.integers(1, 5000, n),
        top_k_ids=rng.integers(0, 100, (n, k)), top_k_logprobs=-rng.exponential(2, (n, k)),
        top_k_tokens=[[" the", " a", ",", ".", "\n"]] * n, model={"name": "synthetic"},
    )
    t0 = time.perf_counter()
    html = r._repr_html_()
    elapsed = time.perf_counter() - t0
    # 100 times what it takes on two idle cores (~0.05 s), so a busy or slow machine passes: it
    # catches a render that grows quadratically with the tokens; speed itself is for benchmarks.
    assert elapsed < 5, elapsed
    assert len(html.encode()) < 2 * 2**20
    assert shown_text(html) == r.text


def test_plots_return_axes(result, tiny_gpt2):
    for kind in ("logprob", "surprisal", "entropy", "perplexity", "rank"):
        ax = result.plot(kind)
        assert ax.has_data()
    with pytest.raises(ValueError, match="unknown plot"):
        result.plot("pie")


def test_windowed_perplexity_and_rank_buckets(result):
    w = windowed_perplexity(result, window=len(result))
    # both in float64 from the same float32 logprobs (cumulative sums vs one sum): ~1e-15 apart
    assert math.isnan(w[0]) and w[-1] == pytest.approx(result.perplexity, rel=1e-9)
    counts = rank_buckets(result)
    assert sum(counts.values()) == result.num_scored
    assert counts["top 10"] == int(np.sum(result.ranks[result.scored] <= 10))


def test_comparison_needs_same_tokens(result, tiny_llama):
    from lightlens.viz import plot_comparison

    other = lightlens.score(TEXT, model=tiny_llama)
    with pytest.raises(ValueError, match="bits_per_byte"):
        plot_comparison(result, other)
    assert plot_comparison(result, result).has_data()


def test_comparison_same_and_different_tokenizers(result, tiny_gpt2, tiny_llama):
    b = lightlens.score(TEXT, model=tiny_gpt2, top_k=5, dtype="bfloat16", device="cpu")
    same = lightlens.compare(result, b)
    assert same.same_tokens
    np.testing.assert_allclose(same.difference(), b.logprobs - result.logprobs, equal_nan=True)
    html = same._repr_html_()
    assert "token by token" in html and html.count("ll-card") >= 3 and "<script" not in html
    other = lightlens.score(TEXT, model=tiny_llama)
    diff = lightlens.compare(result, other)
    assert not diff.same_tokens and "character by character" in diff._repr_html_()
    from lightlens.viz.compare import bits_per_char

    per_char = bits_per_char(result)  # spreads each token's bits over its bytes: sums back to the total
    nbytes = np.array([len(c.encode()) for c in TEXT])
    # the same float32 surprisals (~30, all >= 0) summed in two orders: ~log2(30) roundings of 6e-8
    assert np.nansum(per_char * nbytes) == pytest.approx(np.nansum(result.surprisal_bits), rel=1e-6)
    with pytest.raises(ValueError, match="same text"):
        lightlens.compare(result, lightlens.score("other text", model=tiny_gpt2))


def test_explorer_scores_recolours_and_reports_errors(gpt2_dir):
    app = lightlens.explore("The cat sat on the mat. The cat sat.", model=str(gpt2_dir))
    assert app.result is not None and "ll-t" in app.heatmap.value and "perplexity" in app.summary.value
    before = app.heatmap.value
    app.metric.value = "rank"
    assert app.heatmap.value != before and "top 1000" in app.heatmap.value
    assert "alternative" in app.detail.value
    app.token.value = 0
    assert "not scored" in app.detail.value
    app.text.value = ""
    app.score()
    assert "empty" in app.message.value and app.button.description == "Score"
    app.text.value, app.model.value = "hello", "no-such-org/no-such-model"
    app.score()
    assert "ModelNotFoundError" in app.message.value
