"""JSON Schema 2020-12 files shipped with rxllm, read with ``importlib.resources``."""
