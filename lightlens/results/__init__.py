"""Results: per-token scores of a text and per-document scores of a corpus (numpy and pandas, no torch)."""
from .corpus_result import CorpusResult, CorpusScores, document_row
from .divergence import Divergence
from .generation import GeneratedToken, Generation
from .score_result import ScoreResult

__all__ = ["CorpusResult", "CorpusScores", "Divergence", "GeneratedToken", "Generation", "ScoreResult", "document_row"]
