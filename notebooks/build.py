"""Writes the tutorial notebooks' cells; `make notebooks` then executes them in place.

Kept as code so the notebooks' sources are reviewed like code; the stored outputs are what
running them really printed (nbval checks that in CI).

What nbval compares must hold on every CPU. A float32 forward pass rounds differently on
another CPU (vector width, FMA, summation order: ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` reproduces one), which moves each logprob by ~1e-5 and a perplexity
by ~1e-5 relative; bfloat16 rounds every activation to 8 bits, so there the results of two CPUs
differ by up to ~0.1 nats a token. So:

- a cell whose output shows such numbers to the last digit (heatmaps, tables, comparisons) is
  tagged ``nbval-ignore-output``: readers still see its stored output, nbval does not compare it;
- the ``# check`` cell after it asserts what must hold: the structure of the HTML (one span
  and one tooltip per token), the tokens, and the numbers within a tolerance (perplexity to
  ~1e-3 relative: 100 times the float32 noise, far below what a wrong token, window or BOS
  changes); plots are checked by structure (axes, lines, labels), never by pixels;
- a number printed in a compared output is rounded so that its last digit is at least ten
  times the noise away from a rounding boundary.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent
IGNORE = "nbval-ignore-output"  # nbval runs the cell but does not compare its output


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text, *tags):
    cell = nbf.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


CHECKS_NOTE = """
Cells starting with `# check` are what the test suite (nbval) asserts. Float32 results differ
in the last digits from one CPU to another, so those cells compare numbers with a tolerance
instead of digit by digit; the outputs above them are what this machine printed."""

NOTEBOOKS = {
    "quickstart.ipynb": [
        md("""
# lightlens quickstart

Score a text with the default model (SmolLM2-135M-Instruct, offline from PyPI) and look at
how surprised the model was by each token. Hover a token in the heatmap for its details.
""" + CHECKS_NOTE),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import lightlens

r = lightlens.score(
    "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall. "
    "Some say it was built by aliens from Neptune.",
    top_k=5,
)
r""", IGNORE),
        code("""
# check: one coloured span with a tooltip per token; perplexity to 0.02 (float32 noise: ~2e-4)
import re
html = r._repr_html_()
assert r.tokens[:5] == ["The", " E", "iffel", " Tower", " is"] and (len(r), r.num_scored) == (36, 35)
assert len(re.findall(r"<span class='ll-t[ ']", html)) == html.count("data-tip=") == len(r)
assert html.count("top alternatives:") == r.num_scored and "<script" not in html
assert abs(r.perplexity - 15.508) < 0.02 and abs(r.bits_per_byte - 1.144) < 0.002
assert repr(r).startswith("ScoreResult(model='SmolLM2-135M-Instruct.Q4_1', tokens=36, scored=35, perplexity=")"""),
        md("The summary line, and the numbers behind it:"),
        code("print(repr(r)); print(r.summary())", IGNORE),
        code("""
# check: the summary's numbers (printed to 4 decimals above) agree to the float32 noise
numbers = dict(re.findall(r"(perplexity|nll|bits/byte) ([0-9.]+)", r.summary()))
assert abs(float(numbers["perplexity"]) - 15.508) < 0.02 and abs(float(numbers["nll"]) - 2.7413) < 0.002
assert abs(float(numbers["bits/byte"]) - 1.144) < 0.002 and r.summary().endswith("scored tokens 35/36")
print(f"perplexity ≈ {r.perplexity:.1f}, bits per byte ≈ {r.bits_per_byte:.2f}")"""),
        md("Colour by other metrics: `prob`, `surprisal` (bits), `entropy`, or GLTR's `rank` buckets. "
           "`threshold` outlines tokens more surprising than that many bits."),
        code('r.heatmap(metric="rank", threshold=10)', IGNORE),
        code("""
# check: GLTR's four rank buckets; the three tokens above 10 bits are outlined (the next is 9.8 bits)
hm = r.heatmap(metric="rank", threshold=10).html
assert all(f"</span>{label}" in hm for label in ("top 10", "top 100", "top 1000", "rest"))
outlined = re.findall(r"<span class='ll-t ll-hi'[^>]*>([^<]*)</span>", hm)
assert outlined == [" E", " aliens", " Neptune"], outlined"""),
        md("One row per token:"),
        code("""
df = r.to_pandas()
df[["token", "logprob", "prob", "rank", "entropy"]].round(3).head(12)""", IGNORE),
        code("""
# check: the table above, to its 3 decimals (logprobs move by ~1e-5 between CPUs; a rank only
# where another logit is that close to the token's, so large ranks get 1%)
import numpy as np
assert df.token[:6].tolist() == ["The", " E", "iffel", " Tower", " is", " in"]
np.testing.assert_allclose(df.logprob[1:12], [-9.729, -6.049, -0.075, -2.424, -5.919, -1.502, -1.258,
                                              -3.028, -2.700, -4.684, -0.298], atol=2e-3)
np.testing.assert_allclose(df["rank"][:12], [0, 730, 91, 1, 3, 36, 1, 2, 3, 4, 13, 1], rtol=0.01)"""),
        md("The most surprising tokens:"),
        code('df.sort_values("logprob")[["token", "logprob", "rank", "top_k_tokens"]].head(5)', IGNORE),
        code("""
# check: the five most surprising tokens (0.1 nats or more apart) and their top alternatives (0.3 apart)
top5 = df.sort_values("logprob").head(5)
assert top5.token.tolist() == [" E", " aliens", " Neptune", " Some", "iffel"]
assert list(top5.top_k_tokens.iloc[1][:2]) == [" Gust", " the"] and all(len(t) == 5 for t in top5.top_k_tokens)"""),
        md("Plots return matplotlib Axes (the test suite checks their structure, not their pixels):"),
        code('ax = r.plot("logprob")'),
        code("""
# check: one line, a point per token, the tokens on the x axis
assert len(ax.get_lines()) == 1 and len(ax.get_lines()[0].get_xdata()) == len(r)
assert ax.get_ylabel() == "log-probability (nats)" and len(ax.get_xticklabels()) == len(r)
assert ax.get_title().startswith("SmolLM2-135M-Instruct.Q4_1: perplexity ")"""),
        code('ax = r.plot("entropy")'),
        code("""
# check: the token's surprisal and the distribution's entropy, with a legend
assert ax.get_lines()[0].get_label() == "surprisal of the token"
assert ax.get_ylabel() == "bits" and ax.get_legend() is not None and len(ax.get_lines()) == 2"""),
        code('ax = r.plot("rank")'),
        code("""
# check: a bar per GLTR bucket, labelled with the counts of the 35 scored tokens
labels = [t.get_text() for t in ax.get_xticklabels()]
assert len(ax.patches) == 4 and labels == ["top 10", "top 100", "top 1000", "rest"]
assert sum(int(t.get_text()) for t in ax.texts) == r.num_scored"""),
        md("Load a model once (`lightlens.load` takes a hub id, a folder or a `.gguf` file and caches it "
           "in the process) and score several texts in one padded batch:"),
        code("""
lm = lightlens.load()
print(lm)
batch = lm.score(["The cat sat on the mat.", "The mat sat on the cat."])
for res in batch:
    print(f"{res.perplexity:6.0f}  {res.text}")"""),
        code("""
# check: the same perplexities as above, within float32 noise
assert abs(batch[0].perplexity - 210.11) < 0.3 and abs(batch[1].perplexity - 1260.3) < 1.5"""),
        md("Results save to JSON or Parquet and load without torch:"),
        code("""
import tempfile, pathlib
path = pathlib.Path(tempfile.mkdtemp()) / "r.parquet"
r.save(path)
back = lightlens.ScoreResult.load(path)
back.perplexity == r.perplexity, back.tokens[:5]"""),
    ],
    "long_document.ipynb": [
        md("""
# Perplexity of a long document

WikiText-2's test text (in `../shared/data`) is far longer than the model's context, so it is
scored with a sliding window: every token once, each with at least `max_length - stride`
tokens of context (the Hugging Face protocol). To keep this notebook quick, it scores the
first 4,096 tokens.
""" + CHECKS_NOTE),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
from pathlib import Path
import lightlens

WIKITEXT = Path("../../shared/data/wikitext-2-raw-v1-test.txt")
text = WIKITEXT.read_text(encoding="utf-8")[:40_000]
c = lightlens.perplexity([text], max_length=1024, stride=512, max_tokens=4096, progress=False)
c""", IGNORE),
        md("The summary line, and the same numbers as a dict (`to_dict()`, what `lightlens perplexity --json` prints):"),
        code("print(c.summary())\nc.to_dict()", IGNORE),
        code("""
# check: counts exactly; perplexity to 0.02 and the others to ~1e-3 (float32 noise: ~2e-4)
d = c.to_dict()
assert (d["num_tokens"], d["num_scored"], d["num_documents"], d["num_failed"]) == (4096, 4095, 1, 0)
assert abs(d["perplexity"] - 19.828) < 0.02 and abs(d["nll"] - 2.9871) < 0.002
assert abs(d["bits_per_byte"] - 1.0267) < 0.002 and abs(d["word_perplexity"] - 37.62) < 0.05
assert d["window"] == {"max_length": 1024, "stride": 512} and d["model"]["dtype"] == "float32"
assert c.summary().startswith(f"perplexity {c.perplexity:.4f}  nll {c.nll:.4f}")
print(f"perplexity {c.perplexity:.2f} over {c.num_scored} of {c.num_tokens} tokens")"""),
        md("Every token was scored once, across several windows:"),
        code("doc = c.documents[0]\ndoc.num_scored, doc.window"),
        md("Perplexity over the last 256 tokens, along the document:"),
        code('ax = doc.plot("perplexity", window=256)'),
        code("""
# check: the windowed curve and the whole document's perplexity as a dashed line
assert len(ax.get_lines()) == 2 and len(ax.get_lines()[0].get_ydata()) == len(doc)
assert ax.get_ylabel() == "perplexity (last 256 tokens)"
assert ax.get_legend().get_texts()[0].get_text().startswith("whole text ")"""),
        md("Disjoint windows (`stride == max_length`, lm-evaluation-harness style) give a "
           "slightly higher perplexity: tokens early in a window have less context."),
        code("""
disjoint = lightlens.perplexity([doc.text], max_length=1024, stride=1024, progress=False)
print(f"disjoint windows {disjoint.perplexity:.1f}, overlapping windows {c.perplexity:.1f}")
disjoint.num_scored == c.num_scored"""),
        code("""
# check: every token scored in both; the disjoint windows' perplexity is higher by ~15%
assert abs(disjoint.perplexity - 22.859) < 0.02 and disjoint.perplexity > 1.1 * c.perplexity"""),
    ],
    "explorer.ipynb": [
        md("""
# The explorer

An interactive app: edit the text, pick a model, a metric and colours, set a threshold to
outline surprising tokens, press **Score**. The detail panel shows a token's top-k
alternatives (it starts at the most surprising token). Errors appear in the app.
""" + CHECKS_NOTE),
        code("""
import lightlens

app = lightlens.explore("The quick brown fox jumps over the lazy dog. Then the dog barked at the moon.")
app"""),
        md("The app keeps its last result:"),
        code("""
r = app.result
print(f"perplexity {r.perplexity:.1f}, {r.num_scored} of {len(r)} tokens scored")"""),
        code("""
# check: the heatmap widget has one span per token; the detail panel opens at the most surprising token
import numpy as np
assert abs(r.perplexity - 35.302) < 0.05 and (r.num_scored, len(r)) == (18, 19)
assert app.heatmap.value.count("data-tip=") == len(r) and "perplexity" in app.summary.value
assert app.token.value == int(np.nanargmin(r.logprobs)) and "alternative" in app.detail.value
assert app.plots.value.startswith("<img alt='logprob and entropy plots' src='data:image/png;base64,")"""),
    ],
    "compare.ipynb": [
        md("""
# Comparing two results

Two dtypes of one model (the same tokenizer, so tokens line up): the difference heatmap is
per token. Red: the second result was more surprised; blue: the first was.
""" + CHECKS_NOTE + """ Bfloat16 results differ more between CPUs (up to ~0.1 nats a token):
whether a CPU computes in bfloat16 natively decides where activations are rounded to 8 bits."""),
        code("""
import lightlens

text = "Paris is the capital of France. Its population is about two million people."
a = lightlens.score(text, top_k=3)
b = lightlens.score(text, top_k=3, dtype="bfloat16")
lightlens.compare(a, b)""", IGNORE),
        code("""
# check: two heatmaps and a difference per token; bfloat16 moves each logprob, but not by much
import numpy as np
cmp_html = lightlens.compare(a, b)._repr_html_()
assert "token by token" in cmp_html and cmp_html.count("class='ll-card'") == 3
assert cmp_html.count("data-tip=") == 3 * len(a) and "<script" not in cmp_html
assert (b.model["dtype"], a.model["dtype"]) == ("bfloat16", "float32") and a.tokens == b.tokens
assert abs(a.perplexity - 9.097) < 0.02
delta = np.abs(b.logprobs - a.logprobs)[1:]
assert delta.max() > 0 and delta.max() < 0.5 and abs(np.log(b.perplexity / a.perplexity)) < 0.05"""),
        code("""print(f"float32 {a.perplexity:.2f}, bfloat16 {b.perplexity:.2f}")""", IGNORE),
        md("""
Models with different tokenizers cannot be compared token by token; lightlens spreads each
token's surprisal over the bytes it covers and compares characters, in bits per byte. Here
the second model is a tiny random GPT-2 with its own byte-level tokenizer, built in place
(a real second model would be loaded the same way)."""),
        code("""
import tempfile, torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([text] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
torch.manual_seed(0)
tiny = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=4))
folder = f"{tempfile.mkdtemp()}/tiny-gpt2"
tiny.save_pretrained(folder); tokenizer.save_pretrained(folder)
c = lightlens.score(text, model=folder)
cmp = lightlens.compare(a, c)
cmp.same_tokens"""),
        code("cmp", IGNORE),
        code("""
# check: the difference is per character (one span per character of the text)
cmp_html = cmp._repr_html_()
assert "character by character" in cmp_html and cmp_html.count("class='ll-card'") == 3
diff_part = cmp_html.split("<b>difference, ")[1]
assert diff_part.count("data-tip=") == len(text) and len(cmp.difference()) == len(text)"""),
        md("Bits per byte is the comparable number across tokenizers:"),
        code("round(a.bits_per_byte, 2), round(c.bits_per_byte, 2)"),
        code("""
# check: bits per byte to 1e-3 (float32 noise: ~1e-5); the random model is far worse
assert abs(a.bits_per_byte - 0.6371) < 0.002 and abs(c.bits_per_byte - 2.707) < 0.01"""),
    ],
    "servers.ipynb": [
        md("""
# Servers and whole corpora

A model served by vLLM, LightLLM, TGI or an OpenAI-compatible server gives the same
`ScoreResult` as one loaded here. So that this notebook runs anywhere, a local stand-in
server answers in vLLM's JSON (each word a token, logprob −1); point `model=` at your own
server instead: `"vllm+http://gpu1:8000"`, `"tgi+http://…"`, `"lightllm+http://…?tokenizer=…"`.

Every number here is exact (each logprob is −1, no matrix product involved): the tables are
compared digit for digit on any CPU, and the `# check` cells assert the exact values behind the
rendered views (whose HTML is checked by structure, as in the other notebooks)."""),
        code("""
import lightlens
from lightlens.testing import MockServer, word_scorer

server = MockServer("vllm", word_scorer).start()
r = lightlens.score("Servers report each prompt token's logprob.", model=f"vllm+{server.url}", top_k=2)
r""", IGNORE),
        code("""
# check: a token per word, each logprob exactly -1, so the perplexity is e; a tooltip per token
import math
assert r.tokens == ["Servers", " report", " each", " prompt", " token's", " logprob."] and r.num_scored == 5
assert (r.logprobs[1:] == -1).all() and abs(r.perplexity - math.e) < 1e-12 and r.model["name"] == "mock"
html = r._repr_html_()
assert html.count("data-tip=") == len(r) and html.count("logprob -1.000") == r.num_scored"""),
        md("Servers do not report entropy, and rank only where they give it (vLLM does):"),
        code("r.to_pandas()[['token', 'logprob', 'rank', 'entropy']]"),
        md("""
A pool of servers, with bounded concurrency, time-outs and retries (the key, if any, comes
from `api_key=` or `$LIGHTLENS_API_KEY` and is never shown):"""),
        code("""
pool = lightlens.remote.RemoteModel("vllm", [server.url, server.url], concurrency=8, timeout=30, api_key="sk-not-shown")
pool"""),
        md("""
A whole corpus, written to Parquet as documents finish; running the same call again after
a crash scores only what is missing. A document that fails is recorded with its error:"""),
        code("""
import tempfile, pathlib
out = pathlib.Path(tempfile.mkdtemp()) / "scores.parquet"
docs = [f"Document {i} is about {'many ' * i}things." for i in range(50)] + [""]
c = lightlens.score_corpus(docs, model=pool, out=out, progress=False)
c""", IGNORE),
        code("""
# check: 50 documents scored (the empty one failed), every logprob -1: perplexity e exactly
assert (c.num_documents, len(c.failed), c.num_scored, c.num_tokens) == (51, 1, 1425, 1475)
assert abs(c.perplexity - math.e) < 1e-12 and c.path == out and out.exists()
assert "perplexity" in c._repr_html_() and repr(c).startswith(f"CorpusResult({str(out)!r}, documents=51, failed=1")"""),
        code("c.failed"),
        code("c.to_pandas().head()"),
        code("server.stop()"),
    ],
    "kernels.ipynb": [
        md("""
# Kernel benchmarks

Plots of the measurements in `../benchmarks/results` (written by `python -m benchmarks`).
GPU numbers appear here once a GPU run has been recorded; see `benchmarks/RESULTS.md`."""),
        code("""
import json
from pathlib import Path
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
import pandas as pd

results = Path("../benchmarks/results")
sorted(p.name for p in results.glob("*.json"))"""),
        md("""End to end on CPU: lightlens (logprob, entropy, rank, top-5) against the plain loop
(`model(w).logits` → float32 `log_softmax` → `gather`), the model body alone, and lightlens on a
text four times longer (its extra memory must not grow)."""),
        code("""
cpu = json.loads((results / "cpu.json").read_text())
sides = pd.DataFrame(cpu["sides"]).T[["tokens", "seconds", "extra_mb"]]
print(cpu["date"], cpu["machine"], cpu["setup"])
sides"""),
        code("""
fig, axs = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
colors = ["#9ca3af", "#d1d5db", "#2563eb", "#93c5fd"][: len(sides)]
sides["seconds"].astype(float).plot.bar(ax=axs[0], color=colors, title="time (s)")
sides["extra_mb"].astype(float).plot.bar(ax=axs[1], color=colors, title="peak extra memory (MB)")
for ax in axs: ax.tick_params(axis="x", rotation=0)
round(cpu["time_ratio"], 3), round(cpu["extra_memory_ratio"], 3)"""),
        code("""
# check: the plots' structure (pixels are never compared): two bar charts, a bar per side
assert [ax.get_title() for ax in axs] == ["time (s)", "peak extra memory (MB)"]
assert [len(ax.patches) for ax in axs] == [len(sides), len(sides)]"""),
        md("Token-statistics ops (CPU torch paths; on a GPU the same command measures the Triton kernels):"),
        code("""
k = pd.DataFrame(json.loads((results / "kernels-cpu.json").read_text()))
k["ms"] = k["seconds"] * 1e3
table = k.pivot_table(index=["T", "V", "D"], columns="side", values="ms")
ax = table.plot.bar(figsize=(8, 3), ylabel="ms", rot=0, title="token statistics, CPU")
table.round(1)"""),
        code("""
# check: a bar per (shape, side), one legend entry per side
assert ax.get_title() == "token statistics, CPU" and ax.get_ylabel() == "ms" and len(ax.patches) == table.size
assert [t.get_text() for t in ax.get_legend().get_texts()] == list(table.columns)"""),
    ],
    "divergence.ipynb": [
        md("""
# How much does precision change the model? KL divergence per token

The default model (SmolLM2-135M) in float32 is the base; the same weights in bfloat16 and in
float16 are compared with it on the first 512 tokens of WikiText-2, token by token: KL
divergence of the base's prediction to the other's, Δp of the actual next token, whether the
most likely token stays the same. The numbers are llama.cpp's `--kl-divergence` statistics,
computed exactly (float32, from both full distributions) in one call, with no base file.
""" + CHECKS_NOTE),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import numpy as np
import torch
import lightlens
from lightlens.text.tokens import truncate_tokens

fp32 = lightlens.load(device="cpu", dtype=torch.float32)
bf16 = lightlens.load(device="cpu", dtype=torch.bfloat16)
fp16 = lightlens.load(device="cpu", dtype=torch.float16)
wiki = open("../../shared/data/wikitext-2-raw-v1-test.txt", encoding="utf-8").read()[:6_000]
text = truncate_tokens(fp32.tokenizer, wiki, 512)
d = lightlens.divergence(text, base=fp32, model=bf16, progress=False)
print(d.report())""", IGNORE),
        code("""
# check: llama.cpp's table, and numbers where any CPU lands (bf16 rounding differs between CPUs)
s = d.stats()
report = d.report()
for line in ("Mean PPL(Q)", "Mean ln(PPL(Q)/PPL(base))", "Mean    KLD:", "Median  KLD:", "99.9%   KLD:",
             "RMS Δp    :", "Same top p:"):
    assert line in report, line
assert len(d) == 512 and d.num_scored == 511 and np.isnan(d.kl[0])
assert 1e-4 < s["mean_kl"] < 1e-2 and s["max_kl"] < 1.0 and 85 < s["same_top1"] < 100
assert s["cor_logprob"] > 0.99 and abs(s["ln_ppl_ratio"]) < 0.05
print("bfloat16: mean KL between 1e-4 and 1e-2 nats, the same top-1 token for over 85% of tokens")"""),
        md("The same for float16 (10 mantissa bits instead of bfloat16's 7), side by side:"),
        code("""
import pandas as pd

d16 = lightlens.divergence(text, base=fp32, model=fp16, progress=False)
keys = ["mean_kl", "kl_p99", "max_kl", "mean_js", "rms_delta_p", "same_top1", "ln_ppl_ratio", "cor_logprob"]
table = pd.DataFrame({"bfloat16": d.stats(), "float16": d16.stats()}).loc[keys]
table""", IGNORE),
        code("""
# check: float16 stays much closer to float32 than bfloat16 does (8x finer rounding)
s16 = d16.stats()
assert list(table.index) == keys and list(table.columns) == ["bfloat16", "float16"]
assert s16["mean_kl"] < s["mean_kl"] / 4 and s16["same_top1"] >= s["same_top1"] - 1
assert s16["mean_kl"] > 0 and s16["cor_logprob"] > 0.999"""),
        md("""
Where do they disagree? Tokens coloured by KL (log scale; outlined where the top-1 token
changes). Hover a token for both models' probability of it and both top-5 lists."""),
        code("d.heatmap(max_tokens=300)", IGNORE),
        code("""
# check: one span and one tooltip per shown token, both top-5 lists in every scored tooltip
import re
h = d.heatmap(max_tokens=300)._repr_html_()
shown = sum(1 for t in d.tokens[:300] if t)  # a byte-piece that a later token completes has no span
assert h.count("data-tip=") == len(re.findall(r"<span class='ll-t[ ']", h)) == shown > 290
assert h.count("base top-5") == shown - 1 and "<script" not in h and "more tokens not shown" in h"""),
        md("The KL distribution (CDF, log x), Δp of the actual tokens, and KL along the text:"),
        code("fig = d.plot()", IGNORE),
        code("""
# check: the plots' structure (pixels are never compared)
a, b, c = fig.axes
assert a.get_xscale() == "log" and c.get_yscale() == "log" and b.get_xlabel().startswith("Δp")
assert len(a.lines) == 1 and len(a.lines[0].get_xdata()) == d.num_scored and len(b.patches) == 50"""),
        md("The tokens where bfloat16 moved the prediction most:"),
        code("""
df = d.to_pandas()
df.sort_values("kl", ascending=False).head(5)[["token", "kl", "logprob_base", "logprob", "delta_p", "same_top1"]]""", IGNORE),
        code("""
# check: the table is the result's arrays, sorted
top = df.sort_values("kl", ascending=False).head(5)
assert np.allclose(top["kl"].to_numpy(), np.sort(d.kl[1:])[::-1][:5]) and (top["kl"] > s["kl_p99"]).all()"""),
        md("""
## Full distributions on demand

`lm.distributions(text)` streams float32 log-probability rows (`[n, V]`) for any positions;
`lm.save_distributions(text, path, dtype=...)` writes them memory-mappable, and a later
`divergence(text, base=path, ...)` needs no base model. bfloat16 files are half the size, at a
stated price (each log-probability rounded to 2^-9 of its size):"""),
        code("""
short = truncate_tokens(fp32.tokenizer, wiki, 128)
rows = torch.cat(list(fp32.distributions(short, positions=[5, 6, 7])))
r = fp32.score(short)
path = fp32.save_distributions(short, "base-bf16.safetensors", dtype="bfloat16")
from_file = lightlens.divergence(short, base=path, model=bf16, progress=False)
exact = lightlens.divergence(short, base=fp32, model=bf16, progress=False)
print(rows.shape, from_file.exactness)
print("largest KL difference from the bf16 file:", np.nanmax(np.abs(from_file.kl - exact.kl)))""", IGNORE),
        code("""
# check: the rows are the model's log-probabilities; the bf16 file moves KL by far less than KL itself
assert rows.shape == (3, fp32.vocab_size) and rows.dtype == torch.float32
assert np.allclose(rows[:, r.token_ids[5:8]].diagonal().numpy(), r.logprobs[5:8], atol=1e-4)
assert "2^-9" in from_file.exactness and np.array_equal(from_file.top1_base[1:], exact.top1_base[1:])
assert np.nanmax(np.abs(from_file.kl - exact.kl)) < 0.1 * np.nanmax(exact.kl)
import os; os.remove(path)"""),
    ],
    "generation.ipynb": [
        md("""
# Generation: every token's logprob, and what the sampler did with it

`lm.generate` returns a `Generation`: a ScoreResult over prompt + completion (the completion's
`logprobs` are what `score()` of the same ids gives) plus, for every generated token, its
log-probability under the distribution the sampler actually drew from (`sampled_logprobs`), the
size of that distribution's support (`kept`) and its entropy. Below, with the default model
(SmolLM2-135M): samplers side by side, a sampler written here as a plain function, mirostat
holding its target surprise, contrastive decoding, the live view and the branch explorer.
Hover a generated token in a heatmap for the model's and the sampler's view of it.
""" + CHECKS_NOTE + """ Sampled texts depend on the draws, so the checks assert what each
sampler must do at every step (its kept set, its probabilities), whatever tokens it drew."""),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import math
import numpy as np
import pandas as pd
import torch
import lightlens
from lightlens import sampling
from lightlens.sampling import Sampler

lm = lightlens.load(device="cpu", dtype=torch.float32)
prompt = "The best way to learn a new language is"
greedy = lm.generate(prompt, max_new_tokens=24)   # sampler=None: greedy
greedy""", IGNORE),
        code("""
# check: greedy took the argmax at every step, by margins far above float32 noise (~1e-5), so its
# text is the same on any CPU; one span and one tooltip per token, the prompt's end marked once
import re
gen = greedy.generated
margin = greedy.top_k_logprobs[gen, 0] - greedy.top_k_logprobs[gen, 1]
assert margin.min() > 1e-3 and (greedy.ranks[gen] == 1).all() and (greedy.kept[gen] == 1).all()
assert greedy.completion == (" to immerse yourself in it. This means immersing yourself in the language, "
                             "listening to it, speaking it, and writing it"), greedy.completion
html = greedy._repr_html_()
shown = sum(1 for t in greedy.tokens if t)
assert html.count("data-tip=") == len(re.findall(r"<span class='ll-t[ ']", html)) == shown
assert html.count("class='ll-pe'") == 1 and html.count("sampled p 1.0000") == greedy.num_generated
assert "sampler <b>greedy</b>" in html and "finish <b>length</b>" in html and "<script" not in html"""),
        md("""
## Samplers side by side

The same prompt and seed with five samplers (`Sampler.from_options` takes Hugging Face's option
names). `kept` is how many tokens each step's final distribution kept; the mean raw logprob is
the completion's log-probability per token under the model itself."""),
        code("""
samplers = {
    "greedy": None,
    "temperature 0.7": Sampler.from_options(temperature=0.7),
    "top-k 20": Sampler.from_options(top_k=20),
    "top-p 0.9": Sampler.from_options(top_p=0.9),
    "min-p 0.1": Sampler.from_options(min_p=0.1),
    "typical 0.9": Sampler.from_options(typical_p=0.9),
}
runs = {name: greedy if s is None else lm.generate(prompt, max_new_tokens=24, sampler=s, seed=0)
        for name, s in samplers.items()}
table = pd.DataFrame([{"sampler": name, "kept (median)": np.median(g.kept[g.generated]),
                       "kept (max)": g.kept[g.generated].max(),
                       "mean raw logprob": g.logprobs[g.generated].mean(),
                       "mean sampled logprob": g.sampled_logprobs[g.generated].mean(),
                       "finish": g.finish_reason, "completion": g.completion} for name, g in runs.items()])
table.set_index("sampler").round(3)""", IGNORE),
        code("""
# check: what each sampler must do at every step, whatever it drew (kept sets read off the result)
V = lm.vocab_size
for name, g in runs.items():
    gen = g.generated
    lp, slp = g.logprobs[gen].astype(np.float64), g.sampled_logprobs[gen].astype(np.float64)
    kept, top1 = g.kept[gen], g.top_k_logprobs[gen, 0].astype(np.float64)
    assert (kept >= 1).all() and np.isfinite(slp).all() and (slp <= 1e-6).all(), name
    if name != "temperature 0.7":  # a truncation only renormalises: p(sampled) = p / kept mass >= p
        assert (slp >= lp - 1e-4).all(), name
kept = {name: g.kept[g.generated] for name, g in runs.items()}
assert (kept["temperature 0.7"] == V).all()  # temperature removes nothing
assert (kept["top-k 20"] >= 20).all() and np.median(kept["top-k 20"]) == 20  # more only on a tie
g = runs["top-p 0.9"]  # the kept mass, p / p(sampled), reaches 0.9
assert (np.exp(g.logprobs[g.generated].astype(np.float64) - g.sampled_logprobs[g.generated]) >= 0.9 - 1e-4).all()
g = runs["min-p 0.1"]  # every kept token has p >= 0.1 p(top), the chosen one too
assert (g.logprobs[g.generated] >= g.top_k_logprobs[g.generated, 0] + math.log(0.1) - 1e-4).all()
assert list(table.sampler) == list(samplers) and table["kept (max)"][0] == 1
print("every sampler kept what its rule keeps, at every step")"""),
        md("""
A generation's heatmap can be coloured by what the sampler did: `metric="kept"` (log10 of the
kept-set size; the prompt is not coloured) or `"sampled_logprob"`. Here top-p 0.9: dark where
the model hesitated and the nucleus was wide."""),
        code('runs["top-p 0.9"].heatmap(metric="kept")', IGNORE),
        code("""
# check: every generated token coloured, no prompt token (the sampler did not choose those)
g = runs["top-p 0.9"]
html = g.heatmap(metric="kept")._repr_html_()
coloured = re.findall(r"<span class='ll-t[^']*' style='background:#[0-9a-f]{6}", html)
assert len(coloured) == sum(1 for t in g.tokens[g.num_prompt_tokens:] if t)
assert "tokens the sampler kept (log10)" in html and html.count("kept ") >= g.num_generated"""),
        md("""
`g.plot()` draws the steps: the entropy of the model's distribution and of the sampler's
(truncation lowers it), and the chosen token's probability under both."""),
        code('fig = runs["top-p 0.9"].plot()'),
        code("""
# check: two panels sharing the steps, a line per distribution
a, b = fig.axes
assert a.get_ylabel() == "entropy (bits)" and b.get_ylabel() == "p of the chosen token"
assert [l.get_label() for l in a.lines] == ["model (raw)", "sampler (final)"] == [l.get_label() for l in b.lines]
assert len(a.lines[0].get_xdata()) == runs["top-p 0.9"].num_generated"""),
        md("""
## A sampler of your own

A sampler is any function `f(logprobs, state) -> logprobs` on float32 log-probabilities `[B, V]`
(−inf removes a token; the result is renormalised before the draw). This one is greedy where the
model is sure (its top token has p > 0.5) and explores the tokens within 2 nats of the best
elsewhere:"""),
        code("""
def sure_or_explore(logprobs, state):
    best = logprobs.max(-1, keepdim=True).values
    keep = torch.where(best > math.log(0.5), logprobs >= best, logprobs >= best - 2.0)
    return logprobs.masked_fill(~keep, float("-inf"))

mine = lm.generate(prompt, max_new_tokens=24, sampler=sure_or_explore, seed=0)
print(mine.sampler)
print(mine.generation_table(max_rows=8))""", IGNORE),
        code("""
# check: the rule at every step, read off the top-5 (steps within 1e-3 of a threshold skipped)
gen = mine.generated
top = mine.top_k_logprobs[gen].astype(np.float64)
kept = mine.kept[gen]
sure = top[:, 0] > math.log(0.5) + 1e-3
unsure = top[:, 0] < math.log(0.5) - 1e-3
near = np.abs(top - (top[:, :1] - 2.0)) < 1e-3
within = (top >= top[:, :1] - 2.0).sum(1)
exact = unsure & ~near.any(1) & (within < top.shape[1])  # the 5th is out: the count is exact
assert mine.sampler == "sure_or_explore" and (kept[sure] == 1).all() and (kept[exact] == within[exact]).all()
assert (kept[unsure] >= within[unsure]).all() and sure.any() and unsure.any()
print(f"{sure.sum()} sure steps kept one token; {unsure.sum()} others kept the tokens within 2 nats")"""),
        md("""
## Mirostat holds its target surprise

Mirostat v2 truncates each step at a surprise threshold μ (bits) and moves μ after every draw by
η·(target − surprise). Four samples of 96 tokens (one batch), τ = 3 bits, η = 0.5. The plot shows
the first sample: the surprise of each token under the sampler, its running mean and the
target."""),
        code("""
tau, eta = 3.0, 0.5
walks = lm.generate("The history of the city begins", max_new_tokens=96, n=4, seed=10,
                    sampler=Sampler(sampling.mirostat_v2(tau, eta)))
print("mean surprise of each sample (bits):", [round(float(g.surprise_bits.mean()), 2) for g in walks])
fig = walks[0].plot()""", IGNORE),
        code("""
# check: the rule at every step of every sample, and the target held on average
for g in walks:
    s = g.surprise_bits.astype(np.float64)
    mu = 2 * tau - eta * np.concatenate([[0.0], np.cumsum(s - tau)[:-1]])  # the threshold before each draw
    raw_bits = -g.logprobs[g.generated].astype(np.float64) / math.log(2)
    assert ((raw_bits <= mu + 1e-3) | (g.ranks[g.generated] == 1)).all()  # kept: under μ, or the top token
    assert abs(s.mean() - tau) < 0.15 * tau and g.sampler == "mirostat_v2(3, 0.5)"
pooled = np.concatenate([g.surprise_bits for g in walks])
assert abs(pooled.mean() - tau) < 0.1 * tau and len(pooled) > 200
a, b, c = fig.axes
assert c.get_ylabel() == "surprise (bits)" and [l.get_label() for l in c.lines] == [
    "surprise", "running mean", "target τ = 3 bits"]
assert c.lines[2].get_ydata()[0] == tau
print(f"mean surprise {pooled.mean():.1f} bits over {len(pooled)} tokens (target {tau:g})")"""),
        md("""
## Contrastive decoding

Li et al. (2023): prefer what a strong "expert" believes and a weak "amateur" does not, among the
tokens the expert finds plausible (p ≥ 0.1·p(top)). The amateur must share the expert's
vocabulary, token id for token id; the cheapest such amateur here is the same model cut short: a
second copy of its weights keeping only the first 4 of its 30 blocks (the final norm and the
head read the residual stream after block 4). Greedy on the contrastive score:"""),
        code("""
import copy
from lightlens.models.local import LanguageModel

weights = copy.deepcopy(lm.model)
weights.model.layers = weights.model.layers[:4]
weights.config.num_hidden_layers = 4
amateur = LanguageModel(weights, lm.tokenizer, name="SmolLM2-135M, first 4 of 30 blocks")
cd = Sampler(sampling.contrastive(amateur, alpha=1.0, plausibility=0.1), sampling.greedy())
contrast = lm.generate(prompt, max_new_tokens=24, sampler=cd)
print("greedy:     ", repr(greedy.completion))
print("contrastive:", repr(contrast.completion))""", IGNORE),
        code("""
# check: one token kept each step (greedy on the score), and only plausible tokens chosen
gen = contrast.generated
assert amateur.vocab_size == lm.vocab_size and len(amateur.model.model.layers) == 4
assert len(lm.model.model.layers) == 30 and (contrast.kept[gen] == 1).all()
assert (contrast.logprobs[gen] >= contrast.top_k_logprobs[gen, 0] + math.log(0.1) - 1e-4).all()
assert contrast.sampler.startswith("contrastive('SmolLM2-135M, first 4 of 30 blocks', alpha=1")"""),
        md("""
## Live view

`lightlens.widgets.live(lm, prompt, ...)` shows the tokens as the model chooses them, coloured on
the heatmap's scale with the heatmap's tooltips; when the generation ends the view becomes its
heatmap and the `Generation` is returned: the same tokens as `lm.generate` with the same options.
(`LiveGeneration(lm, prompt, ...)` is the view itself: leave it last in a cell, then call
`.run()`.) Outside a notebook it just generates."""),
        code("""
from lightlens.widgets import BranchExplorer, live

streamed = live(lm, prompt, max_new_tokens=24, sampler=samplers["top-p 0.9"], seed=0)"""),
        code("""
# check: the stream ended with the same tokens and numbers as generate with the same options
same = runs["top-p 0.9"]
assert streamed.token_ids.tolist() == same.token_ids.tolist() and streamed.tokens == same.tokens
assert np.array_equal(streamed.sampled_logprobs, same.sampled_logprobs, equal_nan=True)
assert (streamed.sampler, streamed.seed, streamed.finish_reason) == (same.sampler, same.seed, same.finish_reason)"""),
        md("""
## Branch explorer

What if the model had chosen another token? Pick a generated token and one of its alternatives,
press **Branch**: `lm.branch` continues from there, and every branch is compared with the
original from the branch point on (per-token and total logprob). Here two branches are made by
calling the explorer's methods, at the step where greedy's choice was closest:"""),
        code("""
app = BranchExplorer(lm, greedy)
at = greedy.num_prompt_tokens + int(np.argmin(margin))
app.select(at)
for _, token_id in app.alternative.options[:2]:
    app.branch(at, token_id)
app"""),
        code("app.table().round(3)", IGNORE),
        code("""
# check: each branch starts with its alternative (at the logprob the original listed for it),
# keeps the original before it, and is totalled from the branch point on
t = app.table()
assert len(app.branches) == len(t) == 2 and app.cards.value.count("class='ll-card'") == 3
for b in app.branches:
    g = b.generation
    assert g.token_ids[:at].tolist() == greedy.token_ids[:at].tolist() and g.token_ids[at] == b.token_id
    listed = greedy.top_k_logprobs[at][greedy.top_k_ids[at] == b.token_id][0]
    assert abs(g.logprobs[at] - listed) < 1e-4 and (b.num_after == len(greedy) - at or g.finish_reason == "eos")
    assert np.isclose(b.total_logprob, g.logprobs[at:].astype(np.float64).sum())
assert np.allclose(t["root total logprob"], greedy.logprobs[at:].astype(np.float64).sum())"""),
    ],
}


if __name__ == "__main__":
    import sys

    for name, cells in NOTEBOOKS.items():
        if sys.argv[1:] and name not in sys.argv[1:]:
            continue
        nb = nbf.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbf.write(nb, HERE / name)
        print("wrote", name)
