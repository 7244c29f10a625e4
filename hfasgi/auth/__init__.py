"""Authentication: :class:`ApiKeyAuth`, API keys and where they are stored, and optional JWT bearer tokens."""

from hfasgi.auth.jwt import JWTConfig, JWTVerifier
from hfasgi.auth.keys import KEY_PREFIX, KeyRecord, hash_key, new_key
from hfasgi.auth.middleware import ApiKeyAuth, AuthConfig
from hfasgi.auth.redis_store import RedisKeyStore
from hfasgi.auth.stores import ChainKeyStore, FileKeyStore, KeyStore, MemoryKeyStore, read_key_file, write_key_file

__all__ = [
    "KEY_PREFIX",
    "ApiKeyAuth",
    "AuthConfig",
    "ChainKeyStore",
    "FileKeyStore",
    "JWTConfig",
    "JWTVerifier",
    "KeyRecord",
    "KeyStore",
    "MemoryKeyStore",
    "RedisKeyStore",
    "hash_key",
    "new_key",
    "read_key_file",
    "write_key_file",
]
