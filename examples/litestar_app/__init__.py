"""An existing Litestar app that gains the gateway under ``/hf`` through ``hfasgi.contrib.litestar.HFPlugin``."""
