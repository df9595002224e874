"""Views and files at their edges (issue 10, §7): token labels are text, not math; a split
character is one coloured token; ranks a server did not report (-1) are unknown, never 0; JSON
results are UTF-8 whatever the locale; the converted-model cache follows the umask."""
from __future__ import annotations

import math
import os
import re
import stat
import subprocess
import sys
import textwrap

import matplotlib
import numpy as np
import pytest

import lightlens
from lightlens import ScoreResult
from lightlens.viz import heatmap_html, rank_buckets
from lightlens.viz.colors import get_metric, to_hex

matplotlib.use("Agg")


def made(tokens, logprobs, *, ranks=None, entropy=None, ids=None, model="hand-made") -> ScoreResult:
    """A ScoreResult built by hand: consecutive spans, no top-k."""
    n = len(tokens)
    ends = np.cumsum([len(t) for t in tokens])
    return ScoreResult(
        text="".join(tokens), tokens=list(tokens), token_ids=np.arange(100, 100 + n) if ids is None else ids,
        offsets=np.stack([ends - [len(t) for t in tokens], ends], axis=-1), logprobs=np.array(logprobs, float),
        entropy=np.full(n, np.nan) if entropy is None else entropy,
        ranks=np.zeros(n, int) if ranks is None else ranks,
        top_k_ids=np.zeros((n, 0)), top_k_logprobs=np.zeros((n, 0)), top_k_tokens=[[] for _ in tokens],
        model={"name": model},
    )


def spans(html):
    """(colour or None, tooltip, shown text) of every token span."""
    return re.findall(r"<span class='ll-t[^']*'(?: style='background:(#[0-9a-f]{6})')? data-tip='([^']*)'>(.*?)</span>",
                      html)


# ---- token labels are text ---------------------------------------------------------------------
def test_dollar_signs_plot_as_text():
    r = made(["Cost", " $$", "\\frac{1}{2}", "$$", " $x$", " $\\nope{$"], [math.nan, -1, -2, -3, -1, -1])
    for kind in ("logprob", "surprisal", "entropy"):
        ax = r.plot(kind)
        ax.figure.canvas.draw()  # mathtext raised a ParseException (or ValueError) here
        assert [t.get_text() for t in ax.get_xticklabels()] == r.tokens


def test_dollar_signs_in_a_model_name_plot_as_text():
    r = made(["a", " b"], [math.nan, -1.0], ranks=[0, 1], model="$\\nope{$ model")
    for ax in (r.plot("logprob"), r.plot("perplexity"), r.plot("rank"), lightlens.viz.plot_comparison(r, r)):
        ax.figure.canvas.draw()
    assert ax.get_legend().get_texts()[0].get_text() == "$\\nope{$ model"


# ---- a split character is one token ------------------------------------------------------------
EMOJI = made(["Hi", "", "", " 😀", "!"], [math.nan, -4.0, -2.0, -0.25, -1.0], ranks=[0, 70, 1, 1, 2],
             entropy=np.array([np.nan, 3.0, 1.0, 0.5, 2.0]), ids=np.array([10, 11, 12, 13, 14]))


def test_a_split_character_is_coloured_by_all_its_pieces():
    html = heatmap_html(EMOJI, metric="surprisal")
    colours = {shown: colour for colour, _, shown in spans(html)}
    bits = (4.0 + 2.0 + 0.25) / math.log(2)
    assert colours[" 😀"] == to_hex(np.array([bits]), 0.0, 15.0, "YlOrRd")[0]
    assert colours["!"] == to_hex(np.array([1.0 / math.log(2)]), 0.0, 15.0, "YlOrRd")[0]


@pytest.mark.parametrize("metric, expected", [("logprob", -6.25), ("prob", math.exp(-6.25)),
                                              ("entropy", 4.5), ("rank", 70)])
def test_every_metric_combines_a_split_characters_pieces(metric, expected):
    m = get_metric(metric)
    colour = {shown: c for c, _, shown in spans(heatmap_html(EMOJI, metric=metric))}[" 😀"]
    if metric == "rank":
        assert colour == "#ffe680"  # top 100: the worst piece's rank
    else:
        assert colour == to_hex(np.array([expected]), m.vmin, m.vmax, m.cmap)[0]


def test_a_split_characters_tooltip_lists_every_piece():
    tip = {shown: t for _, t, shown in spans(heatmap_html(EMOJI))}[" 😀"]
    assert "3 byte-pieces" in tip and "-6.250" in tip
    for token_id, lp in ((11, "-4.000"), (12, "-2.000"), (13, "-0.250")):
        assert re.search(rf"id {token_id}\s+logprob {lp}", tip), tip


def test_threshold_counts_a_split_character_whole():
    html = heatmap_html(EMOJI, threshold=8.0)  # the pieces are 5.8, 2.9 and 0.4 bits; together 9.0
    assert html.count("ll-hi'") == 1


# ---- ranks the backend did not report ----------------------------------------------------------
UNKNOWN = made(["The", " cat", " sat", " on", " mat"], [math.nan, -1.0, -2.0, -3.0, -4.0],
               ranks=[0, -1, 5, -1, 2000])


def test_an_unknown_rank_is_shown_as_unknown_in_the_heatmap():
    found = spans(heatmap_html(UNKNOWN, metric="rank"))
    colour = {shown: c for c, _, shown in found}
    assert colour[" cat"] == colour[" on"] == "" and colour[" sat"] and colour[" mat"]
    tips = {shown: t for _, t, shown in found}
    assert "rank ?" in tips[" cat"] and "rank 5" in tips[" sat"] and "rank -1" not in tips[" cat"]


def test_unknown_ranks_are_left_out_of_the_gltr_buckets():
    assert rank_buckets(UNKNOWN) == {"top 10": 1, "top 100": 0, "top 1000": 0, "rest": 1}
    ax = UNKNOWN.plot("rank")
    assert [p.get_height() for p in ax.patches] == [0.5, 0, 0, 0.5]
    assert "2 scored tokens with unknown rank" in ax.get_xlabel()


def test_an_unknown_rank_prints_as_a_question_mark():
    rows = UNKNOWN.table().splitlines()[1:]
    assert rows[0].split()[-4:] == ["—", "—", "—", "—"]  # unscored, as before
    assert rows[1].split()[-2:] == ["?", "?"] and rows[2].split()[-2:] == ["5", "?"]  # entropy unknown too


def test_an_unscored_token_keeps_rank_zero():
    r = made(["a", " b"], [math.nan, -1.0], ranks=[0, 3])
    assert r.table().splitlines()[1].split()[-1] == "—" and rank_buckets(r)["top 10"] == 1


# ---- files ------------------------------------------------------------------------------------
def test_json_results_are_utf8_under_a_c_locale(tmp_path):
    r = made(["Caf", "é", " ✓"], [math.nan, -1.0, -2.0])
    r.save(tmp_path / "here.json")
    assert "Café ✓" in (tmp_path / "here.json").read_bytes().decode("utf-8")
    code = textwrap.dedent(f"""
        import locale, sys
        from lightlens.results.score_result import ScoreResult
        assert locale.getpreferredencoding(False).lower() in ("ascii", "ansi_x3.4-1968"), locale.getpreferredencoding(False)
        r = ScoreResult.load(sys.argv[1])
        assert r.text == "Caf\\u00e9 \\u2713", ascii(r.text)
        r.save(sys.argv[2])
    """)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "ascii"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "here.json"), str(tmp_path / "there.json")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert ScoreResult.load(tmp_path / "there.json").text == "Café ✓"


def test_the_converted_model_cache_follows_the_umask(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from test_gguf_race import write_tiny_gguf

    from lightlens.models.gguf import converted_dir

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setenv("LIGHTLENS_CACHE", str(tmp_path / "cache"))
    old = os.umask(0o022)
    try:
        out = converted_dir(gguf)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".partial")]


def test_the_explorer_shows_an_unreported_rank_as_unknown(tiny_gpt2):
    from lightlens.widgets.explorer import Explorer

    app = Explorer("Hello world! Hello again.", model=tiny_gpt2)
    app.result.ranks[1] = -1  # as a server that reports no rank gives it
    app.result.entropy[1] = float("nan")
    app.token.value = 1
    app.show_token()
    assert "rank ?" in app.detail.value and "entropy ?" in app.detail.value
