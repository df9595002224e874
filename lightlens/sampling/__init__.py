"""Sampling: the model's log-probabilities [B, V] → a chain of steps → the distribution a token is drawn from."""
from .contrastive import contrastive
from .mirostat import mirostat_v2
from .penalties import frequency_penalty, presence_penalty, repetition_penalty
from .sampler import Sampler
from .state import SamplerState
from .step import Step, custom
from .temperature import entropy_temperature, temperature
from .truncation import epsilon_cutoff, eta_cutoff, greedy, min_p, top_k, top_p, typical_p

__all__ = ["Sampler", "SamplerState", "Step", "contrastive", "custom", "entropy_temperature", "epsilon_cutoff",
           "eta_cutoff", "frequency_penalty", "greedy", "min_p", "mirostat_v2", "presence_penalty",
           "repetition_penalty", "temperature", "top_k", "top_p", "typical_p"]
