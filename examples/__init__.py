"""Example apps that gain the hfasgi gateway (importable, so ``uvicorn examples.<name>.app:app`` works)."""
