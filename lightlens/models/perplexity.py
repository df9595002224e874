"""Corpus perplexity with any scorer: every document scored once, aggregated as one corpus."""
from __future__ import annotations

from ..options import check_max_tokens
from ..results.corpus_result import CorpusResult
from ..text.documents import read_documents
from ..text.tokens import truncate_tokens


def corpus_perplexity(scorer, source, *, max_length: int | None = None, stride: int | None = None,
                      bos: bool | None = None, batch_size: int | None = None, progress: bool | None = True,
                      max_tokens: int | None = None, text_field: str = "text", id_field: str = "id") -> CorpusResult:
    """Score every document of ``source`` (anything :func:`read_documents` reads) with
    ``scorer`` (a local or remote model) and return their :class:`CorpusResult`.

    >>> c = corpus_perplexity(tiny, ["The cat sat.", "The dog ran."], progress=False)
    >>> c.num_documents, c.table["id"].tolist()
    (2, ['0', '1'])
    """
    max_tokens = check_max_tokens(max_tokens)  # before any work
    docs = read_documents(source, text_field=text_field, id_field=id_field)
    ids, texts = [i for i, _ in docs], [t for _, t in docs]
    if max_tokens is not None:
        tokenizer = getattr(scorer, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("max_tokens needs the model's tokenizer: give the server's ?tokenizer=PATH")
        texts = [truncate_tokens(tokenizer, t, max_tokens) for t in texts]
    results = scorer.score(texts, top_k=0, max_length=max_length, stride=stride, bos=bos,
                           batch_size=batch_size, progress=progress)
    return CorpusResult.from_results(results, ids)
