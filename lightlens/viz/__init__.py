"""Views of results: the HTML heatmap and matplotlib plots (no network, no JavaScript needed)."""
from .generation import generation_html, plot_generation
from .heatmap import Heatmap, heatmap_html
from .plots import (
    plot_comparison,
    plot_entropy,
    plot_logprobs,
    plot_rank_histogram,
    plot_windowed_perplexity,
    rank_buckets,
    windowed_perplexity,
)

__all__ = [
    "Heatmap",
    "generation_html",
    "heatmap_html",
    "plot_comparison",
    "plot_entropy",
    "plot_generation",
    "plot_logprobs",
    "plot_rank_histogram",
    "plot_windowed_perplexity",
    "rank_buckets",
    "windowed_perplexity",
]
