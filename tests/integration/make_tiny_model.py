"""Build the tiny random Llama the integration tier serves: ``python tests/integration/make_tiny_model.py OUT_DIR``.

The builder is :func:`hfasgi.local.tiny.build_tiny_llama` (also ``hfasgi local prepare-tiny DIR``). ``conftest.py``
caches built models by the hash of *this* file, so it records the builder's own hash: when ``hfasgi/local/tiny.py``
changes, update :data:`BUILDER_SHA256` (``tests/local/test_prepare.py`` fails until it matches).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hfasgi.local.tiny import CHAT_TEMPLATE, SEED, SPECIAL_TOKENS, build_tiny_llama

__all__ = ["BUILDER_SHA256", "CHAT_TEMPLATE", "SEED", "SPECIAL_TOKENS", "build_tiny_llama"]

BUILDER_SHA256 = "5d41fca3a76b12b7e3747b85f01646eec6b98145c431b1f5905ef07d50a2d4bc"
"""SHA-256 of ``hfasgi/local/tiny.py``: a new builder means a new cache key."""

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    print(build_tiny_llama(Path(sys.argv[1])))
