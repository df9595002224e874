"""Client throughput against a server that answers instantly: ``python -m benchmarks client``.

The mock server (in its own process, so the client's time is its own) answers each request
in the chosen server format at once; lightlens sends ``docs`` documents with ``concurrency``
requests in flight and turns every answer into a checked ScoreResult. Two figures: the
scoring loop alone (``RemoteModel.score_each``) and the whole ``score_corpus`` run (with its
Parquet parts and merge). The client's CPU seconds per document are reported too, since
on a small machine the server shares the cores.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: benchmarks/ is not installed


def _serve(kind: str) -> None:
    from lightlens.testing import MockServer, word_scorer

    server = MockServer(kind, word_scorer).start()
    print(server.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


def _documents(n: int) -> list[str]:
    words = "the model reads each token and assigns it a probability given all tokens before it".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(40 + i % 40)) + f" doc {i}." for i in range(n)]


def run(*, kind: str = "vllm", docs: int = 2000, concurrency: int = 32) -> dict:
    """Documents per second of the client against an instant local ``kind`` server."""
    import lightlens
    from lightlens.remote import RemoteModel

    server = subprocess.Popen([sys.executable, "-m", "benchmarks.client", "_serve", kind], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        model = RemoteModel(kind, url, model_name="mock", concurrency=concurrency)
        texts = _documents(docs)
        list(model.score_each(texts[:64], top_k=5))  # warm up: connections, imports
        cpu0, t0 = time.process_time(), time.perf_counter()
        tokens = sum(len(r.tokens) for _, r in model.score_each(texts, top_k=5))
        loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            c = lightlens.score_corpus(texts, model=model, top_k=5, out=os.path.join(tmp, "s.parquet"), progress=False)
            corpus_s = time.perf_counter() - t0
        assert len(c.failed) == 0 and len(c.table) == docs
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    return {
        "benchmark": "client", "date": date.today().isoformat(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "lightlens": lightlens.__version__,
        "server_kind": kind, "docs": docs, "concurrency": concurrency, "tokens": tokens,
        "score_each_docs_per_s": docs / loop_s, "score_corpus_docs_per_s": docs / corpus_s,
        "client_cpu_ms_per_doc": 1000 * loop_cpu / docs, "tokens_per_s": tokens / loop_s,
        "command": f"python -m benchmarks client --kind {kind} --docs {docs} --concurrency {concurrency}",
    }


def print_table(r: dict) -> None:
    """The measurements as a few lines of text."""
    print(f"client vs an instant local {r['server_kind']} server: {r['docs']} documents, "
          f"concurrency {r['concurrency']}, {r['cpus']} CPUs")
    print(f"  score_each:   {r['score_each_docs_per_s']:8.0f} docs/s  ({r['tokens_per_s']:,.0f} tokens/s, "
          f"client CPU {r['client_cpu_ms_per_doc']:.2f} ms/doc)")
    print(f"  score_corpus: {r['score_corpus_docs_per_s']:8.0f} docs/s  (with Parquet parts and merge)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_serve"]:
        _serve(sys.argv[2])
    else:
        r = run(**json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
        print_table(r)
