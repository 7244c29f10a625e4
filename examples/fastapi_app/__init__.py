"""An existing FastAPI app that gains the gateway under ``/hf`` through ``hfasgi.contrib.fastapi``."""
