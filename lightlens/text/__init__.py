"""Text in: corpora → (id, text) documents → token ids with character spans → sliding windows."""
