"""Thin framework adapters; each module imports its framework only when it is imported itself.

* :mod:`hfasgi.contrib.starlette` — ``middleware(layers)`` for ``Starlette(middleware=...)``, and
  ``install(app, layers)`` for an existing Starlette app;
* :mod:`hfasgi.contrib.fastapi` — ``install(app, layers)`` for an existing FastAPI app;
* :mod:`hfasgi.contrib.litestar` — ``HFPlugin(layers)``, the gateway under a prefix of a Litestar app.

Plain ASGI needs no adapter: ``Lifespan(stack(app, *layers), resources=layer_resources(layers))``
(:mod:`hfasgi.stack`), which is also how to put the layers in front of a *whole* FastAPI or Litestar app.
"""
