"""Models: the default model's fetch, GGUF conversion, loading, LanguageModel, and `get_model`
(models.scorer) that turns any ``model=`` into a scorer. Importing this package imports nothing
heavy: each module is imported where it is used."""
