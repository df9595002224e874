"""Views of results: the HTML heatmap and matplotlib plots (no network, no JavaScript needed)."""
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
    "heatmap_html",
    "plot_comparison",
    "plot_entropy",
    "plot_logprobs",
    "plot_rank_histogram",
    "plot_windowed_perplexity",
    "rank_buckets",
    "windowed_perplexity",
]
