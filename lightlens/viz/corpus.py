"""A corpus result as a small HTML table: the aggregate, then the most surprising documents."""
from __future__ import annotations

import html


def corpus_html(c, *, top: int = 5) -> str:
    """The aggregate numbers of a corpus result and its ``top`` highest-perplexity documents.

    >>> c = lightlens.CorpusResult.from_results([result, tiny.score("Hello world")], ids=["a", "b"])
    >>> page = corpus_html(c)
    >>> page.count("<tr>"), "<script" in page   # 7 numbers, then the 2 documents
    (9, False)
    """
    cell = "<tr><th style='text-align:left;padding-right:1em'>{}</th><td>{}</td></tr>".format
    rows = [cell(html.escape(k), html.escape(v)) for k, v in (
        ("perplexity", f"{c.perplexity:.4f}"), ("bits per byte", f"{c.bits_per_byte:.4f}"),
        ("word perplexity", f"{c.word_perplexity:.4f}"), ("nll", f"{c.nll:.4f}"),
        ("scored tokens", f"{c.num_scored:,} of {c.num_tokens:,}"),
        ("documents", f"{c.num_documents:,} ({len(c.failed)} failed)"),
        ("model", str(c.model.get("name", "?"))))]
    worst = c.to_pandas().dropna(subset=["perplexity"]).nlargest(top, "perplexity")
    rows += [cell(f"document {html.escape(str(d.id))}", f"perplexity {d.perplexity:.2f} over {d.num_scored} tokens")
             for d in worst.itertuples()]
    return f"<table class='lightlens-corpus'><caption>CorpusResult</caption>{''.join(rows)}</table>"
