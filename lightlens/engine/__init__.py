"""The scoring engine: windows → padded batches → model forward → token statistics → results."""
