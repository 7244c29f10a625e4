"""Example apps that gain the hfasgi gateway.

Importable, so ``uvicorn --factory examples.<name>.app:create_app`` works.
"""
