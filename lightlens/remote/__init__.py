"""Scores and greedy generations from models served elsewhere: LightLLM, vLLM, OpenAI-compatible
servers, TGI and (generation only) llama.cpp's llama-server.

>>> lightlens.score("The cat sat.", model=f"vllm+{server.url}").tokens   # server: a MockServer
['The', ' cat', ' sat.']
>>> m = lightlens.remote.RemoteModel("tgi", ["http://gpu1:8080", "http://gpu2:8080"])
>>> m.pool.urls
['http://gpu1:8080', 'http://gpu2:8080']
"""
from .backend import RemoteModel, connect, is_remote
from .formats import FORMATS
from .generation import GENERATORS, GeneratedTokens
from .tokens import ServerTokens, to_result

__all__ = ["FORMATS", "GENERATORS", "GeneratedTokens", "RemoteModel", "ServerTokens", "connect", "is_remote",
           "to_result"]
