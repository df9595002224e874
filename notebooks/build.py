"""Writes the tutorial notebooks' cells; `make notebooks` then executes them in place.

Kept as code so the notebooks' sources are reviewed like code; the stored outputs are what
running them really printed (nbval checks that in CI).
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text, *tags):
    cell = nbf.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


NOTEBOOKS = {
    "quickstart.ipynb": [
        md("""
# lightlens quickstart

Score a text with the default model (SmolLM2-135M-Instruct, offline from PyPI) and look at
how surprised the model was by each token. Hover a token in the heatmap for its details."""),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import lightlens

r = lightlens.score(
    "The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall. "
    "Some say it was built by aliens from Neptune.",
    top_k=5,
)
r"""),
        md("The summary line, and the numbers behind it:"),
        code("print(repr(r)); print(r.summary())"),
        md("Colour by other metrics: `prob`, `surprisal` (bits), `entropy`, or GLTR's `rank` buckets. "
           "`threshold` outlines tokens more surprising than that many bits."),
        code('r.heatmap(metric="rank", threshold=10)'),
        md("One row per token:"),
        code("""
df = r.to_pandas()
df[["token", "logprob", "prob", "rank", "entropy"]].round(3).head(12)"""),
        md("The most surprising tokens:"),
        code('df.sort_values("logprob")[["token", "logprob", "rank", "top_k_tokens"]].head(5)'),
        md("Plots return matplotlib Axes:"),
        code('ax = r.plot("logprob")'),
        code('ax = r.plot("entropy")'),
        code('ax = r.plot("rank")'),
        md("Load a model once (`lightlens.load` takes a hub id, a folder or a `.gguf` file and caches it "
           "in the process) and score several texts in one padded batch:"),
        code("""
lm = lightlens.load()
print(lm)
for res in lm.score(["The cat sat on the mat.", "The mat sat on the cat."]):
    print(f"{res.perplexity:8.2f}  {res.text}")"""),
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
first 4,096 tokens."""),
        code("""
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
from pathlib import Path
import lightlens

WIKITEXT = Path("../../shared/data/wikitext-2-raw-v1-test.txt")
text = WIKITEXT.read_text(encoding="utf-8")[:40_000]
c = lightlens.perplexity([text], max_length=1024, stride=512, max_tokens=4096, progress=False)
c"""),
        code("c.summary()"),
        md("Every token was scored once, across several windows:"),
        code("doc = c.documents[0]\ndoc.num_scored, doc.window"),
        md("Perplexity over the last 256 tokens, along the document:"),
        code('ax = doc.plot("perplexity", window=256)'),
        md("Disjoint windows (`stride == max_length`, lm-evaluation-harness style) give a "
           "slightly higher perplexity: tokens early in a window have less context."),
        code("""
d = lightlens.perplexity([doc.text], max_length=1024, stride=1024, progress=False)
round(d.perplexity, 3), round(c.perplexity, 3), d.num_tokens == c.num_tokens"""),
    ],
    "explorer.ipynb": [
        md("""
# The explorer

An interactive app: edit the text, pick a model, a metric and colours, set a threshold to
outline surprising tokens, press **Score**. The detail panel shows a token's top-k
alternatives (it starts at the most surprising token). Errors appear in the app."""),
        code("""
import lightlens

app = lightlens.explore("The quick brown fox jumps over the lazy dog. Then the dog barked at the moon.")
app"""),
        md("The app keeps its last result:"),
        code("round(app.result.perplexity, 4), app.result.num_scored"),
    ],
    "compare.ipynb": [
        md("""
# Comparing two results

Two dtypes of one model (the same tokenizer, so tokens line up): the difference heatmap is
per token. Red: the second result was more surprised; blue: the first was."""),
        code("""
import lightlens

text = "Paris is the capital of France. Its population is about two million people."
a = lightlens.score(text, top_k=3)
b = lightlens.score(text, top_k=3, dtype="bfloat16")
lightlens.compare(a, b)"""),
        code("round(a.perplexity, 3), round(b.perplexity, 3)"),
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
        code("cmp"),
        md("Bits per byte is the comparable number across tokenizers:"),
        code("round(a.bits_per_byte, 4), round(c.bits_per_byte, 4)"),
    ],
    "servers.ipynb": [
        md("""
# Servers and whole corpora

A model served by vLLM, LightLLM, TGI or an OpenAI-compatible server gives the same
`ScoreResult` as one loaded here. So that this notebook runs anywhere, a local stand-in
server answers in vLLM's JSON (each word a token, logprob −1); point `model=` at your own
server instead: `"vllm+http://gpu1:8000"`, `"tgi+http://…"`, `"lightllm+http://…?tokenizer=…"`."""),
        code("""
import lightlens
from lightlens.remote.mock_server import MockServer, word_scorer

server = MockServer("vllm", word_scorer).start()
r = lightlens.score("Servers report each prompt token's logprob.", model=f"vllm+{server.url}", top_k=2)
r"""),
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
c"""),
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
        md("End to end on CPU: lightlens against a hand-written Hugging Face loop, same forward passes."),
        code("""
cpu = json.loads((results / "cpu.json").read_text())
sides = pd.DataFrame(cpu["sides"]).T[["seconds", "rss_peak_mb", "extra_mb", "perplexity", "scored"]]
print(cpu["date"], cpu["machine"], cpu["setup"])
sides"""),
        code("""
fig, axs = plt.subplots(1, 2, figsize=(9, 3), layout="constrained")
sides["seconds"].astype(float).plot.bar(ax=axs[0], color=["#9ca3af", "#2563eb"], title="time (s)")
sides["extra_mb"].astype(float).plot.bar(ax=axs[1], color=["#9ca3af", "#2563eb"], title="peak extra memory (MB)")
for ax in axs: ax.tick_params(axis="x", rotation=0)
round(cpu["time_ratio"], 3), round(cpu["peak_memory_ratio"], 3)"""),
        md("Token-statistics ops (CPU torch paths; on a GPU the same command measures the Triton kernels):"),
        code("""
k = pd.DataFrame(json.loads((results / "kernels-cpu.json").read_text()))
k["ms"] = k["seconds"] * 1e3
table = k.pivot_table(index=["T", "V", "D"], columns="side", values="ms")
ax = table.plot.bar(figsize=(8, 3), ylabel="ms", rot=0, title="token statistics, CPU")
table.round(1)"""),
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
