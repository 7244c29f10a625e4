"""Tests of the managed local model (hfasgi.local) that need neither torch nor transformers."""
