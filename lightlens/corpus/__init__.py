"""Corpus runs: resumable Parquet parts (journal), data-parallel ranks, and `score_corpus`."""
