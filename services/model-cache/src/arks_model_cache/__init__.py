"""arks_model_cache: Hugging Face models downloaded once into a shared cache.

Modes: the service (`serving`, jobs from NATS) and the one-shot download (`cli`), both
through `handling.run_job` and `caching.ModelCache`. Only `downloading` talks to a Hub.
`testing.fakehub` is a fake Hub for tests of any member. See docs/model-cache.md.
"""
