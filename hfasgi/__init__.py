"""hfasgi: pure-ASGI middlewares that make any ASGI app a Hugging Face-compatible inference gateway."""

__version__ = "0.1.0"
