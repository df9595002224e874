"""Scores from models served elsewhere: LightLLM, vLLM, OpenAI-compatible servers and TGI.

>>> lightlens.score("The cat sat.", model=f"vllm+{server.url}").tokens   # server: a MockServer
['The', ' cat', ' sat.']
>>> m = lightlens.remote.RemoteModel("tgi", ["http://gpu1:8080", "http://gpu2:8080"])
>>> m.pool.urls
['http://gpu1:8080', 'http://gpu2:8080']
"""
from .backend import RemoteModel, connect, is_remote
from .formats import FORMATS
from .tokens import ServerTokens, to_result

__all__ = ["FORMATS", "RemoteModel", "ServerTokens", "connect", "is_remote", "to_result"]
