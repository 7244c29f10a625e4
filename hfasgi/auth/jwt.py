"""Signed bearer tokens (JWTs, as issued by an OAuth2 / OIDC provider) as an alternative to API keys.

Requires the ``jwt`` extra (``pip install 'hfasgi[jwt]'``: PyJWT with ``cryptography``).
:class:`~hfasgi.auth.middleware.ApiKeyAuth` hands every bearer that looks like a JWT to
:meth:`JWTVerifier.verify`; a valid token becomes a :class:`~hfasgi.principal.Principal`:

================  =====================================================================
claim             becomes
================  =====================================================================
``sub``           the principal's id, ``jwt:<sub>`` (required: what limits count by)
``models``        allowed models, a list of ids or shell patterns (absent: any model)
``tasks``         allowed tasks, a list of HF task names (absent: any task)
``rate_limit``    the caller's request limit, a string such as ``"60/minute"``
``token_limit``   the caller's token limit, a string such as ``"100000/hour"``
``max_tokens``    the most output tokens one request may ask for (a positive integer)
``max_prompt_length``  the longest prompt one request may send, in characters
================  =====================================================================

The claim names are configurable (:class:`JWTConfig`), e.g. for an identity provider that wants
namespaced custom claims. ``exp`` is required (unless ``require_exp=False``); ``nbf``, ``iat``,
``iss`` and ``aud`` are checked, with ``leeway`` seconds of clock skew.

The JWKS file is the identity provider's public JSON Web Key Set, as served at its ``jwks_uri``,
saved to disk (read at start-up; restart the gateway, or reopen the verifier, after a key rotation)::

    {"keys": [
        {"kty": "RSA", "kid": "2026-12", "use": "sig", "alg": "RS256", "n": "0vx7…", "e": "AQAB"},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "f83O…", "y": "x_FE…"}
    ]}

A token's ``kid`` header picks its key; a token without one is checked against the only key of the
file, if the file has one. Keys marked ``"use": "enc"`` are ignored, symmetric (``oct``) keys are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import TLRUCache

from hfasgi.limits import Limit
from hfasgi.principal import Principal

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys
    from jwt.types import Options

__all__ = ["JWTConfig", "JWTVerifier"]

logger = logging.getLogger("hfasgi.auth")

_NEEDS_PYJWT = "JWT bearer tokens need PyJWT: pip install 'hfasgi[jwt]'"

_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_BY_CURVE = {"secp256r1": "ES256", "secp256k1": "ES256K", "secp384r1": "ES384", "secp521r1": "ES512"}
_ASYMMETRIC = _RSA | frozenset(_EC_BY_CURVE.values()) | {"EdDSA"}
_HMAC = {"HS256": 32, "HS384": 48, "HS512": 64}
"""The shared-secret algorithms and the shortest secret (bytes) each accepts (RFC 7518 §3.2)."""
_MIN_RSA_BITS = 2048
_CACHE_TTL = 60.0
_CACHE_SIZE = 10_000
_MAX_TOKEN = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class JWTConfig:
    """Configuration of :class:`JWTVerifier`: which keys sign tokens, and what a token must say.

    Keys come from ``jwks_file``, from ``keys``, or both. An entry of ``keys`` is either a PEM public
    key or certificate (``-----BEGIN PUBLIC KEY-----``; the asymmetric ``algorithms`` that fit its
    type), or a shared secret of at least 32 bytes (HS256; HS384 from 48 bytes, HS512 from 64). JWKS
    keys never accept HS* (so a public key cannot be abused as an HMAC secret); ``none`` is never accepted.
    """

    jwks_file: str | None = None
    """A JWKS file (``{"keys": [...]}``): the identity provider's public keys."""
    keys: tuple[str, ...] = field(default=(), repr=False)
    """Verification keys given directly: PEM public keys (or certificates) and shared secrets. Tried,
    in order, for every token whose algorithm they accept, whatever its ``kid``."""
    issuer: str | None = None
    """The ``iss`` tokens must carry (unchecked when ``None``)."""
    audience: str | None = None
    """An ``aud`` tokens must carry. When ``None``, tokens that name an audience are refused (RFC 7519 §4.1.3)."""
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA", "PS256")
    """The asymmetric algorithms accepted (RS*, PS*, ES256/ES256K/ES384/ES512, EdDSA)."""
    leeway: float = 30.0
    """Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    require_exp: bool = True
    """Refuse tokens without an ``exp``."""
    models_claim: str = "models"
    tasks_claim: str = "tasks"
    rate_limit_claim: str = "rate_limit"
    token_limit_claim: str = "token_limit"

    def __post_init__(self) -> None:
        keys = _as_tuple(self.keys, "keys")
        algorithms = _as_tuple(self.algorithms, "algorithms")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "algorithms", algorithms)
        if self.jwks_file is None and not keys:
            raise ValueError("JWTConfig needs jwks_file (a JWKS file), keys (PEM public keys or secrets), or both")
        if self.jwks_file is not None and (not isinstance(self.jwks_file, str) or not self.jwks_file.strip()):
            raise ValueError("JWTConfig.jwks_file must be a non-empty path")
        for i, key in enumerate(keys):
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"JWTConfig.keys[{i}] must be a non-empty string")
            if _is_pem(key):
                if "PRIVATE KEY" in key.lstrip().partition("\n")[0]:
                    raise ValueError(f"JWTConfig.keys[{i}] is a private key: give its public key")
            elif len(key.encode()) < _HMAC["HS256"]:
                raise ValueError(f"JWTConfig.keys[{i}]: a shared secret must be at least 32 bytes long")
        if not algorithms:
            raise ValueError("JWTConfig.algorithms must name at least one algorithm")
        for alg in algorithms:
            if not isinstance(alg, str) or alg.lower() == "none":
                raise ValueError(f"JWTConfig.algorithms: {alg!r} is never accepted")
            if alg.upper() in _HMAC:
                raise ValueError(
                    f"JWTConfig.algorithms lists asymmetric algorithms only; {alg} is allowed by itself for"
                    " shared secrets given in JWTConfig.keys"
                )
            if alg not in _ASYMMETRIC:
                raise ValueError(f"JWTConfig.algorithms: unknown algorithm {alg!r} (expected {sorted(_ASYMMETRIC)})")
        for name in ("issuer", "audience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"JWTConfig.{name} must be a non-empty string or None")
        if not isinstance(self.leeway, int | float) or not 0 <= self.leeway < math.inf:
            raise ValueError(f"JWTConfig.leeway must be >= 0 seconds, got {self.leeway!r}")
        for name in ("models_claim", "tasks_claim", "rate_limit_claim", "token_limit_claim"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"JWTConfig.{name} must be a non-empty claim name")


@dataclass(frozen=True, slots=True)
class _Key:
    """A verification key and the algorithms it accepts."""

    kid: str | None
    key: AllowedPublicKeys | bytes = field(repr=False)
    algorithms: frozenset[str]


class JWTVerifier:
    """Checks signed bearer tokens and maps their claims to a :class:`~hfasgi.principal.Principal`.

    A shared resource (opened and closed by the app's lifespan): :meth:`open` reads the JWKS file.
    Successful verifications are cached by the token's SHA-256 for up to 60 s, never past the
    token's ``exp``, so a client reusing its token costs a hash and a dict lookup. ``clock``
    (seconds since the epoch) is for tests.
    """

    def __init__(self, config: JWTConfig, *, clock: Callable[[], float] = time.time) -> None:
        try:
            import jwt  # noqa: F401
        except ImportError:
            raise RuntimeError(_NEEDS_PYJWT) from None
        self.config = config
        self._clock = clock
        self._configured = tuple(_configured_key(i, k, config.algorithms) for i, k in enumerate(config.keys))
        self._jwks: tuple[_Key, ...] = ()
        self._by_kid: dict[str, _Key] = {}
        self._open = config.jwks_file is None
        self._cache: TLRUCache[bytes, tuple[Principal, float], float] = TLRUCache(_CACHE_SIZE, _time_to_use, clock)

    def __repr__(self) -> str:
        return f"JWTVerifier(jwks_file={self.config.jwks_file!r}, keys=<{len(self.config.keys)} hidden>)"

    async def open(self) -> None:
        """Read the JWKS file (a missing or malformed file raises ``ValueError`` naming it). Idempotent."""
        if self._open:
            return
        path = str(self.config.jwks_file)
        try:
            keys = _read_jwks(Path(path), self.config.algorithms)
        except ValueError as exc:
            raise ValueError(f"JWKS file {path!r}: {exc}") from None
        by_kid: dict[str, _Key] = {}
        for key in keys:
            if key.kid is not None:
                if key.kid in by_kid:
                    raise ValueError(f"JWKS file {path!r}: the key id {key.kid!r} appears twice")
                by_kid[key.kid] = key
        self._jwks, self._by_kid, self._open = keys, by_kid, True

    async def aclose(self) -> None:
        """Forget the JWKS keys and the cache (:meth:`open` reads the file again)."""
        self._cache.clear()
        if self.config.jwks_file is not None:
            self._jwks, self._by_kid, self._open = (), {}, False

    def looks_like_jwt(self, token: str) -> bool:
        """Whether ``token`` has a JWT's shape: a JSON header (``eyJ``), a payload and a signature, dot-separated.

        Runs on every bearer, so it only looks at the structure; :meth:`verify` checks the encoding.
        """
        if not token.startswith("eyJ"):
            return False
        first = token.find(".")
        second = token.find(".", first + 1)
        return first > 3 and second > first + 1 and token.find(".", second + 1) < 0

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; ``ValueError`` with a short reason (never the token) otherwise."""
        if not self._open:
            raise RuntimeError("the JWT verifier is not open: add it to the app's resources (lifespan)")
        if len(token) > _MAX_TOKEN:
            raise ValueError("the token is too long")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            self._cache.pop(digest, None)
        principal, expires = self._verify(token, now)
        self._cache[digest] = (principal, expires)
        return principal

    def _verify(self, token: str, now: float) -> tuple[Principal, float]:
        """Check ``token`` from scratch: its principal and when it expires (``inf`` when it does not)."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise ValueError("the token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or not alg:
            raise ValueError("the token names no algorithm ('alg')")
        if alg.lower() == "none":
            raise ValueError("the token is not signed (alg 'none')")
        candidates = self._candidates(alg, kid)
        config = self.config
        options: Options = {
            "verify_exp": False,  # checked below, with the verifier's clock
            "verify_nbf": False,
            "verify_iat": False,
            "enforce_minimum_key_length": True,
        }
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token, key.key, algorithms=[alg], audience=config.audience, issuer=config.issuer, options=options
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except (jwt.PyJWTError, ValueError, TypeError, RecursionError, OverflowError) as exc:
                raise ValueError(_reason(exc)) from None
        if claims is None:
            raise ValueError("signature verification failed")
        expires = self._check_times(claims, now)
        return self._principal(claims), expires

    def _candidates(self, alg: str, kid: Any) -> list[_Key]:
        """The keys to try for a token with these headers (usually one); ``ValueError`` when there are none."""
        if kid is not None and kid in self._by_kid:
            key = self._by_kid[kid]
            if alg not in key.algorithms:
                raise ValueError(f"algorithm {_short(alg)} is not accepted for key {_short(kid)}")
            return [key]
        found = list(self._configured)
        if kid is None and len(self._jwks) == 1:
            found.extend(self._jwks)
        usable = [k for k in found if alg in k.algorithms]
        if usable:
            return usable
        if kid is not None:
            raise ValueError(f"unknown key id {_short(kid)}")
        if not found:
            raise ValueError(f"the token names no key ('kid') and the JWKS file has {len(self._jwks)} keys")
        raise ValueError(f"algorithm {_short(alg)} is not accepted")

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        """Check ``exp``, ``nbf`` and ``iat`` against ``now``; when the token expires (``inf``: never)."""
        leeway = self.config.leeway
        stamps = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is not None:
                if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                    raise ValueError(f"the token's {name!r} claim is not a number")
                stamps[name] = float(value)
        exp = stamps.get("exp")
        if exp is None and self.config.require_exp:
            raise ValueError("the token has no expiry ('exp')")
        if exp is not None and exp <= now - leeway:
            raise ValueError("the token has expired")
        if stamps.get("nbf", -math.inf) > now + leeway:
            raise ValueError("the token is not valid yet ('nbf' is in the future)")
        if stamps.get("iat", -math.inf) > now + leeway:
            raise ValueError("the token is not valid yet ('iat' is in the future)")
        return math.inf if exp is None else exp

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        """The principal the token's claims describe."""
        sub = claims.get("sub")
        if sub is None:
            raise ValueError("the token has no subject ('sub')")
        if not isinstance(sub, str) or not sub:
            raise ValueError("the token's subject ('sub') is not a non-empty string")
        config = self.config
        return Principal.restricted(
            f"jwt:{sub}",
            models=_strings(claims, config.models_claim),
            tasks=_strings(claims, config.tasks_claim),
            rate_limit=_limit(claims, config.rate_limit_claim),
            token_limit=_limit(claims, config.token_limit_claim),
            max_tokens=_cap(claims, "max_tokens"),
            max_prompt_length=_cap(claims, "max_prompt_length"),
            source="jwt",
        )


def _time_to_use(_key: bytes, value: tuple[Principal, float], now: float) -> float:
    """When a cache entry expires: 60 s from now, or at the token's ``exp`` if sooner."""
    return min(now + _CACHE_TTL, value[1])


def _reason(exc: BaseException) -> str:
    """A short, safe reason for a PyJWT failure (PyJWT's own messages are not passed on)."""
    import jwt

    if isinstance(exc, jwt.MissingRequiredClaimError):
        return {"iss": "the token has no issuer ('iss')", "aud": "the token has no audience ('aud')"}.get(
            exc.claim, f"the token has no {_short(exc.claim)} claim"
        )
    reasons: tuple[tuple[Any, str], ...] = (
        (jwt.InvalidIssuerError, "the token's issuer is not accepted"),
        (jwt.InvalidAudienceError, "the token's audience is not accepted"),
        (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted"),
        (jwt.InvalidKeyError, "the key does not fit the token's algorithm"),
        # PyJWT >= 2.10 checks the types of sub and jti
        (getattr(jwt.exceptions, "InvalidSubjectError", ()), "the token's subject ('sub') is not a string"),
        (getattr(jwt.exceptions, "InvalidJTIError", ()), "the token's id ('jti') is not a string"),
        (jwt.DecodeError, "the token is malformed"),
        (jwt.PyJWTError, "the token is invalid"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return "the token is malformed"


def _strings(claims: Mapping[str, Any], name: str) -> list[str] | None:
    """A list-of-strings claim (``None`` when absent)."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"the token's {_short(name)} claim must be a list of strings")
    return value


def _limit(claims: Mapping[str, Any], name: str) -> Limit | None:
    """A limit claim such as ``"60/minute"`` (``None`` when absent)."""
    value = claims.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return Limit.parse(value)
    except ValueError:
        raise ValueError(f"the token's {_short(name)} claim is not a limit such as '60/minute' or '10/30s'") from None


def _cap(claims: Mapping[str, Any], name: str) -> int | None:
    """A per-request cap claim (a positive integer; ``None`` when absent)."""
    value = claims.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ValueError(f"the token's {name!r} claim is not a positive integer")
    return value


def _short(value: object) -> str:
    """``repr`` of a (client-controlled) value, cut to a sensible length for an error message."""
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def _as_tuple(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"JWTConfig.{name} must be a tuple of strings")
    return tuple(value)


def _is_pem(key: str) -> bool:
    return key.lstrip().startswith("-----BEGIN")


def _configured_key(index: int, text: str, allowed: tuple[str, ...]) -> _Key:
    """A key of ``JWTConfig.keys``: a PEM public key or certificate, or a shared secret."""
    label = f"JWTConfig.keys[{index}]"
    if not _is_pem(text):
        secret = text.encode()
        return _Key(None, secret, frozenset(a for a, size in _HMAC.items() if len(secret) >= size))
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        raise RuntimeError(_NEEDS_PYJWT) from None
    data = text.strip().encode()
    try:
        if b"CERTIFICATE" in data.partition(b"\n")[0]:
            public: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            public = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"{label} is not a valid PEM public key or certificate") from None
    key, algorithms = _public_key(public, allowed, None)
    if not algorithms:
        raise ValueError(f"{label}: JWTConfig.algorithms {list(allowed)} has no algorithm for this key")
    return _Key(None, key, algorithms)


def _public_key(key: object, allowed: Iterable[str], explicit: str | None) -> tuple[AllowedPublicKeys, frozenset[str]]:
    """``key`` checked (type, size) and the algorithms it accepts: those of its type, in ``allowed``,
    and only ``explicit`` when the key names its algorithm."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    fits: frozenset[str]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"an RSA key needs at least {_MIN_RSA_BITS} bits, this one has {key.key_size}")
        fits = _RSA
    elif isinstance(key, ec.EllipticCurvePublicKey):
        fits = frozenset({_EC_BY_CURVE[key.curve.name]} if key.curve.name in _EC_BY_CURVE else ())
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        fits = frozenset({"EdDSA"})
    else:
        raise ValueError(f"unsupported key type {type(key).__name__}")
    if explicit is not None:
        fits &= {explicit}
    return key, fits & frozenset(allowed)


def _read_jwks(path: Path, allowed: tuple[str, ...]) -> tuple[_Key, ...]:
    """The signing keys of a JWKS file; ``ValueError`` (without the path) when it is missing or malformed."""
    import jwt

    if not jwt.algorithms.has_crypto:
        raise RuntimeError(_NEEDS_PYJWT)
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(exc.strerror or type(exc).__name__) from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError('expected a JSON Web Key Set: {"keys": [{"kty": ...}, ...]}')
    loaded = []
    for n, entry in enumerate(entries):
        kid = entry["kid"] if isinstance(entry.get("kid"), str) else None
        name = f"key {_short(kid)}" if kid else f"key #{n + 1}"
        if entry.get("kty") == "oct":
            raise ValueError(f"{name} is a symmetric ('oct') key: give shared secrets in JWTConfig.keys instead")
        ops = entry.get("key_ops")
        if entry.get("use", "sig") != "sig" or (isinstance(ops, list) and "verify" not in ops):
            continue  # an encryption key
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWTError, NotImplementedError, ValueError, TypeError, KeyError) as exc:
            reason = str(exc)[:100] or type(exc).__name__
            logger.warning("hfasgi: JWKS file %s: %s is ignored, PyJWT cannot use it (%s)", path, name, reason)
            continue
        explicit = entry.get("alg")
        try:
            key, algorithms = _public_key(jwk.key, allowed, explicit if isinstance(explicit, str) else None)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        loaded.append(_Key(kid, key, algorithms))
    if not loaded:
        raise ValueError("no usable signing keys (RSA, EC or Ed25519 keys for signatures)")
    return tuple(loaded)
