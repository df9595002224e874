"""Scores from models served elsewhere: LightLLM, vLLM, OpenAI-compatible servers and TGI.

>>> lightlens.score("The cat sat.", model="vllm+http://127.0.0.1:8000")    # doctest: +SKIP
>>> m = lightlens.remote.RemoteModel("tgi", ["http://gpu1:8080", "http://gpu2:8080"])  # doctest: +SKIP
"""
from .backend import RemoteModel, connect, is_remote
from .formats import FORMATS
from .tokens import ServerTokens, to_result

__all__ = ["FORMATS", "RemoteModel", "ServerTokens", "connect", "is_remote", "to_result"]
