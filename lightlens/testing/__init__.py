"""Helpers for testing code that talks to scoring servers: a mock server in each dialect.

>>> from lightlens.testing import MockServer, word_scorer
>>> with MockServer("vllm", word_scorer) as server:
...     r = lightlens.score("Hello there", model=f"vllm+{server.url}")
>>> r.tokens
['Hello', ' there']
"""
from .mock_server import MockServer, scorer_from_model, word_scorer

__all__ = ["MockServer", "scorer_from_model", "word_scorer"]
