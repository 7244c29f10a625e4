"""A gateway replica for the two-process test: the reference layers with the cache on a Redis store.

``uvicorn tests.cache.replica_app:create --factory`` with ``CACHE_TEST_UPSTREAM`` (the fake HF server's
URL) and ``CACHE_TEST_REDIS_URL``; each process builds its own :class:`~hfasgi.redis_client.RedisConnection`,
opened and closed by the lifespan. To be replaced by ``hfasgi serve`` once the reference app is wired for
the cache (``HFASGI_CACHE_TTL``, ``HFASGI_REDIS_URL``).
"""

from __future__ import annotations

import os
from typing import Any

from hfasgi.cache import RedisCacheStore
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.redis_client import RedisConnection
from hfasgi.stack import Lifespan, layer_resources, stack
from tests.cache.support import CHAT_MODEL, catalog_for, gateway_layers, not_found


def create() -> Any:
    """The replica's ASGI app (uvicorn ``--factory``)."""
    forwarder = ForwarderConfig(catalog=catalog_for(os.environ["CACHE_TEST_UPSTREAM"], default_model=CHAT_MODEL))
    store = RedisCacheStore(RedisConnection(os.environ["CACHE_TEST_REDIS_URL"]))
    found = gateway_layers(forwarder, store)
    return Lifespan(stack(not_found, *found), resources=layer_resources(found))
