"""The public API is small and explicit: the root exports exactly these names, every entry
point has a full keyword-only signature (no ``**options`` hiding it from ``help()``) and an
``Args:`` docstring with an example."""
from __future__ import annotations

import inspect

import lightlens
from lightlens import api

ENTRY_POINTS = ["compare", "divergence", "explore", "generate", "load", "perplexity", "score", "score_corpus"]


def test_root_exports_are_pinned():
    assert sorted(lightlens.__all__) == sorted([
        *ENTRY_POINTS, "CorpusResult", "CorpusScores", "Divergence", "GeneratedToken", "Generation",
        "LightlensError", "ModelNotFoundError", "NoScoredTokensWarning", "RemoteError", "RemoteResponseError",
        "ScoreResult", "__version__", "remote", "sampling", "testing"])
    for name in lightlens.__all__:
        assert getattr(lightlens, name) is not None
    assert lightlens.CorpusScores is lightlens.CorpusResult  # the old name still works


def test_root_defines_nothing_itself():
    for name in ENTRY_POINTS:
        assert getattr(lightlens, name) is getattr(api, name)


def test_entry_points_have_full_keyword_only_signatures():
    for name in ENTRY_POINTS:
        params = list(inspect.signature(getattr(api, name)).parameters.values())
        kinds = [p.kind for p in params]
        assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds, name
        positional = [p.name for p in params if p.kind != inspect.Parameter.KEYWORD_ONLY]
        assert len(positional) <= 2, f"{name}: only the data may be positional, got {positional}"


def test_entry_points_document_every_option():
    for name in ENTRY_POINTS:
        fn = getattr(api, name)
        doc = inspect.getdoc(fn)
        assert "Args:" in doc and ">>>" in doc, name
        for p in inspect.signature(fn).parameters:
            assert f"{p}:" in doc, f"{name} does not document {p}"
