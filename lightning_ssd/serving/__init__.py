"""An OpenAI-compatible chat-completions server on LitServe: SSD with continuous batching, safe by default.

Modules: `limits` (every limit and its default), `protocol` (reading and checking a request), `spec` (the HTTP side,
on LitServe's OpenAI spec), `api` (the LitAPI that owns the engine, and the loop that drives it), `metrics`
(Prometheus). The command is `python -m lightning_ssd serve` (`lightning_ssd/tools/serve.py`).
"""
