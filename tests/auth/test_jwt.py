"""JWT bearer tokens: :class:`~hfasgi.auth.jwt.JWTVerifier` on its own, and through :class:`ApiKeyAuth`.

Keys are generated at run time; tokens are signed with PyJWT (or forged by hand where PyJWT refuses to).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hfasgi.auth import ApiKeyAuth, AuthConfig
from hfasgi.auth.jwt import JWTConfig, JWTVerifier
from hfasgi.context import get_context
from hfasgi.limits import Limit
from hfasgi.types import Receive, Scope, Send

NOW = 1_800_000_000.0
ISSUER = "https://id.example.com/"
AUDIENCE = "hfasgi"
SECRET = "s" * 32


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def intruder_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _jwk(data: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    jwk = json.loads(data) if isinstance(data, str) else dict(data)
    jwk.update(extra)
    return jwk


def write_jwks(path: Path, *keys: dict[str, Any]) -> str:
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> str:
    """An RSA key (no ``alg``: RS* and PS*), an EC key bound to ES256, and an encryption key that is ignored."""
    return write_jwks(
        tmp_path / "jwks.json",
        _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="rsa-1", use="sig"),
        _jwk(ECAlgorithm.to_jwk(ec_key.public_key()), kid="ec-1", alg="ES256"),
        _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="enc-1", use="enc", alg="RSA-OAEP"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def opened(config: JWTConfig, clock: Clock) -> JWTVerifier:
    verifier = JWTVerifier(config, clock=clock)
    await verifier.open()
    return verifier


@pytest.fixture
async def verifier(jwks_file: str, clock: Clock) -> JWTVerifier:
    return await opened(JWTConfig(jwks_file=jwks_file, issuer=ISSUER, audience=AUDIENCE), clock)


def claims(**overrides: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": NOW, "exp": NOW + 300}
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def sign(key: Any, alg: str = "RS256", kid: str | None = "rsa-1", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid} if kid else None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_secret: bytes | None = None) -> str:
    """A token built by hand (PyJWT refuses to make these): unsigned, or HMAC-signed with any bytes."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if hmac_secret is None else hmac.digest(hmac_secret, signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(signature)}"


def refused(verifier: JWTVerifier, token: str, match: str) -> str:
    """Check that ``token`` is refused with a message matching ``match``, which never quotes the token."""
    with pytest.raises(ValueError, match=match) as info:
        verifier.verify(token)
    message = str(info.value)
    signature = token.rsplit(".", 1)[-1]
    assert token not in message
    assert not signature or signature not in message
    return message


def pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- valid tokens ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_valid_token_becomes_a_principal(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(
        rsa_key,
        models=["meta-llama/*", "openai/gpt-oss-20b"],
        tasks=["chat-completion"],
        rate_limit="60/minute",
        token_limit="100000/hour",
    )
    principal = verifier.verify(token)
    assert principal.id == "jwt:alice"
    assert principal.source == "jwt"
    assert principal.models == ("meta-llama/*", "openai/gpt-oss-20b")
    assert principal.tasks == frozenset({"chat-completion"})
    assert principal.rate_limit == Limit(60, 60)
    assert principal.token_limit == Limit(100000, 3600)
    assert principal.allows_model("meta-llama/Llama-3.1-8B-Instruct")
    assert not principal.allows_model("Qwen/Qwen3-8B")


@pytest.mark.anyio
async def test_absent_scope_claims_mean_unrestricted(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    principal = verifier.verify(sign(rsa_key))
    assert (principal.models, principal.tasks, principal.rate_limit, principal.token_limit) == (None,) * 4
    assert not principal.scoped


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key_name", "alg", "kid"), [("rsa", "RS256", "rsa-1"), ("rsa", "PS256", "rsa-1"), ("ec", "ES256", "ec-1")]
)
async def test_each_jwks_key_and_algorithm(
    verifier: JWTVerifier, request: pytest.FixtureRequest, key_name: str, alg: str, kid: str
) -> None:
    key = request.getfixturevalue(f"{key_name}_key")
    assert verifier.verify(sign(key, alg, kid)).id == "jwt:alice"


@pytest.mark.anyio
async def test_configured_pem_keys_and_secrets(
    clock: Clock, ed_key: ed25519.Ed25519PrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = JWTVerifier(JWTConfig(keys=(pem(ed_key), pem(ec_key), SECRET)), clock=clock)
    # no JWKS file: usable without open(); configured keys are tried whatever the token's kid
    assert verifier.verify(sign(ed_key, "EdDSA", kid=None, aud=None)).id == "jwt:alice"
    assert verifier.verify(sign(ec_key, "ES256", kid="whatever", aud=None, sub="bob")).id == "jwt:bob"
    assert verifier.verify(sign(SECRET, "HS256", kid=None, aud=None, sub="carol")).id == "jwt:carol"
    # a 32-byte secret is too short for HS512 (RFC 7518 §3.2)
    refused(verifier, sign(SECRET * 2, "HS512", kid=None, aud=None), "algorithm 'HS512' is not accepted")
    await verifier.open()
    await verifier.aclose()
    assert verifier.verify(sign(SECRET, "HS256", kid=None, aud=None)).id == "jwt:alice"


@pytest.mark.anyio
async def test_a_single_key_jwks_accepts_tokens_without_kid(
    tmp_path: Path, clock: Clock, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = write_jwks(tmp_path / "one.json", _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="rsa-1"))
    verifier = await opened(JWTConfig(jwks_file=path), clock)
    assert verifier.verify(sign(rsa_key, kid=None, aud=None)).id == "jwt:alice"


# --- refused tokens --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_expired_token(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, exp=NOW - 31), "the token has expired")
    assert verifier.verify(sign(rsa_key, exp=NOW - 29)).id == "jwt:alice"  # within the 30 s leeway


@pytest.mark.anyio
async def test_exp_is_required_unless_disabled(jwks_file: str, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = await opened(JWTConfig(jwks_file=jwks_file, audience=AUDIENCE), clock)
    refused(verifier, sign(rsa_key, exp=None), r"no expiry \('exp'\)")
    refused(verifier, sign(rsa_key, exp="tomorrow"), "'exp' claim is not a number")
    lenient = await opened(JWTConfig(jwks_file=jwks_file, audience=AUDIENCE, require_exp=False), clock)
    assert lenient.verify(sign(rsa_key, exp=None)).id == "jwt:alice"


@pytest.mark.anyio
async def test_not_yet_valid(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, nbf=NOW + 60), "not valid yet.*'nbf'")
    refused(verifier, sign(rsa_key, iat=NOW + 60), "not valid yet.*'iat'")
    assert verifier.verify(sign(rsa_key, nbf=NOW + 20)).id == "jwt:alice"  # within the leeway


@pytest.mark.anyio
async def test_issuer_and_audience(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, iss="https://evil.example.com/"), "the token's issuer is not accepted")
    refused(verifier, sign(rsa_key, iss=None), r"no issuer \('iss'\)")
    refused(verifier, sign(rsa_key, aud="someone-else"), "the token's audience is not accepted")
    refused(verifier, sign(rsa_key, aud=None), r"no audience \('aud'\)")
    assert verifier.verify(sign(rsa_key, aud=["other", AUDIENCE])).id == "jwt:alice"


@pytest.mark.anyio
async def test_an_audience_is_refused_when_none_is_configured(
    jwks_file: str, clock: Clock, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = await opened(JWTConfig(jwks_file=jwks_file), clock)
    refused(verifier, sign(rsa_key, aud="someone"), "audience is not accepted")
    assert verifier.verify(sign(rsa_key, aud=None)).id == "jwt:alice"


@pytest.mark.anyio
async def test_signed_by_another_key(verifier: JWTVerifier, intruder_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(intruder_key), "^signature verification failed$")


@pytest.mark.anyio
async def test_tampered_payload(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = sign(rsa_key).split(".")
    payload = _b64(json.dumps(claims(sub="admin")).encode())
    refused(verifier, f"{header}.{payload}.{signature}", "signature verification failed")


@pytest.mark.anyio
async def test_unknown_kid(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, kid="abc"), "^unknown key id 'abc'$")
    refused(verifier, sign(rsa_key, kid="enc-1"), "unknown key id 'enc-1'")  # encryption keys are ignored
    refused(verifier, sign(rsa_key, kid=None), r"names no key \('kid'\)")  # and there are two keys


@pytest.mark.anyio
async def test_a_key_only_accepts_its_algorithms(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, "RS512", "rsa-1"), "algorithm 'RS512' is not accepted for key 'rsa-1'")
    refused(verifier, sign(rsa_key, "RS256", "ec-1"), "algorithm 'RS256' is not accepted for key 'ec-1'")


@pytest.mark.anyio
async def test_alg_none_is_refused(verifier: JWTVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims())
        assert verifier.looks_like_jwt(token)
        refused(verifier, token, r"not signed \(alg 'none'\)")
    refused(verifier, forge({"typ": "JWT", "kid": "rsa-1"}, claims(), b"x" * 32), r"no algorithm \('alg'\)")


@pytest.mark.anyio
async def test_algorithm_confusion_is_refused(
    tmp_path: Path, clock: Clock, verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    """HS256 "signed" with the RSA public key's PEM as the HMAC secret: the classic key-confusion attack."""
    secret = pem(rsa_key).encode()
    token = forge({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), secret)
    refused(verifier, token, "algorithm 'HS256' is not accepted for key 'rsa-1'")
    # without a kid against a one-key JWKS, and with the same PEM also configured directly
    path = write_jwks(tmp_path / "one.json", _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="rsa-1"))
    single = await opened(JWTConfig(jwks_file=path, keys=(pem(rsa_key),), audience=AUDIENCE), clock)
    refused(single, forge({"alg": "HS256", "typ": "JWT"}, claims(), secret), "algorithm 'HS256' is not accepted")


@pytest.mark.anyio
async def test_missing_or_odd_subject(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    refused(verifier, sign(rsa_key, sub=None), r"^the token has no subject \('sub'\)$")
    refused(verifier, sign(rsa_key, sub=""), r"subject \('sub'\) is not a non-empty string")
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(sub=42), SECRET.encode())
    secret_only = JWTVerifier(JWTConfig(keys=(SECRET,), audience=AUDIENCE), clock=Clock())
    refused(secret_only, token, r"subject \('sub'\) is not a string")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("claim", "value", "match"),
    [
        ("models", "meta-llama/*", "'models' claim must be a list of strings"),
        ("models", ["a", 1], "'models' claim must be a list of strings"),
        ("tasks", {"chat-completion": True}, "'tasks' claim must be a list of strings"),
        ("rate_limit", "lots", "'rate_limit' claim is not a limit such as '60/minute'"),
        ("rate_limit", 60, "'rate_limit' claim is not a limit"),
        ("token_limit", "0/minute", "'token_limit' claim is not a limit"),
    ],
)
async def test_malformed_claims(
    verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey, claim: str, value: Any, match: str
) -> None:
    refused(verifier, sign(rsa_key, **{claim: value}), match)


@pytest.mark.anyio
async def test_custom_claim_names(jwks_file: str, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> None:
    config = JWTConfig(
        jwks_file=jwks_file,
        audience=AUDIENCE,
        models_claim="https://hfasgi/models",
        rate_limit_claim="https://hfasgi/rpm",
    )
    verifier = await opened(config, clock)
    token = sign(rsa_key, **{"https://hfasgi/models": ["a/*"], "https://hfasgi/rpm": "5/minute", "models": 7})
    principal = verifier.verify(token)
    assert principal.models == ("a/*",)
    assert principal.rate_limit == Limit(5, 60)


@pytest.mark.anyio
async def test_malformed_tokens(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    not_json = jwt.api_jws.encode(b"not json", rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    refused(verifier, not_json, "^the token is malformed$")  # well signed, but its payload is no JSON object
    truncated, deep = _b64(b'{"alg'), _b64(b'{"a":' + b"[" * 5000)
    refused(verifier, truncated + ".e30.c2ln", "^the token is malformed$")
    refused(verifier, deep + ".e30.c2ln", "^the token is malformed$")
    refused(verifier, "eyJhbGciOiJSUzI1NiJ9.e3 0.c2ln", "^the token is malformed$")  # the shape, not the encoding
    refused(verifier, "eyJ" + "a" * 20_000 + ".e30.c2ln", "^the token is too long$")


# --- the cache -------------------------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts full verifications (calls of ``jwt.decode``)."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    yield calls


@pytest.mark.anyio
async def test_the_cache_serves_repeated_tokens(
    verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey, clock: Clock, decodes: list[str]
) -> None:
    token = sign(rsa_key, exp=NOW + 3600)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert len(decodes) == 1
    assert all(isinstance(k, bytes) and len(k) == 32 for k in verifier._cache)  # SHA-256 digests, not tokens
    clock.now += 61  # entries live 60 s at most
    assert verifier.verify(token) == first
    assert len(decodes) == 2


@pytest.mark.anyio
async def test_a_cached_token_is_refused_once_expired(
    jwks_file: str, rsa_key: rsa.RSAPrivateKey, clock: Clock, decodes: list[str]
) -> None:
    verifier = await opened(JWTConfig(jwks_file=jwks_file, audience=AUDIENCE, leeway=0), clock)
    token = sign(rsa_key, exp=NOW + 5)
    principal = verifier.verify(token)
    clock.now += 4
    assert verifier.verify(token) is principal
    clock.now += 1
    refused(verifier, token, "the token has expired")
    assert len(decodes) == 2


@pytest.mark.anyio
async def test_the_cache_never_outlives_exp_even_within_the_leeway(
    verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey, clock: Clock, decodes: list[str]
) -> None:
    token = sign(rsa_key, exp=NOW + 5)
    verifier.verify(token)
    clock.now += 10  # past exp, within the 30 s leeway: checked again, still accepted
    assert verifier.verify(token).id == "jwt:alice"
    assert len(decodes) == 2
    clock.now += 30
    refused(verifier, token, "expired")


@pytest.mark.anyio
async def test_failures_are_not_cached(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, nbf=NOW + 100)
    refused(verifier, token, "not valid yet")
    assert len(verifier._cache) == 0


# --- the JWKS file and the configuration -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_missing_jwks_file(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "absent.json")
    verifier = JWTVerifier(JWTConfig(jwks_file=path), clock=clock)  # no I/O yet
    with pytest.raises(RuntimeError, match="not open"):
        verifier.verify("eyJ.e30.")
    with pytest.raises(ValueError, match=re.escape(f"JWKS file '{path}': No such file")):
        await verifier.open()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"nope": []}', "expected a JSON Web Key Set"),
        ('{"keys": "abc"}', "expected a JSON Web Key Set"),
        ('{"keys": []}', "no usable signing keys"),
        ('{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}', "key 's' is a symmetric \\('oct'\\) key"),
        ('{"keys": [{"kty": "XYZ"}]}', "no usable signing keys"),
    ],
)
async def test_a_malformed_jwks_file(tmp_path: Path, clock: Clock, content: str, match: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"JWKS file '{path}': ") + match):
        await JWTVerifier(JWTConfig(jwks_file=str(path)), clock=clock).open()


@pytest.mark.anyio
async def test_weak_or_duplicate_jwks_keys(tmp_path: Path, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = write_jwks(tmp_path / "weak.json", _jwk(RSAAlgorithm.to_jwk(weak.public_key()), kid="old"))
    with pytest.raises(ValueError, match="key 'old': an RSA key needs at least 2048 bits, this one has 1024"):
        await JWTVerifier(JWTConfig(jwks_file=path), clock=clock).open()
    jwk = _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="k")
    path = write_jwks(tmp_path / "twice.json", jwk, jwk)
    with pytest.raises(ValueError, match="the key id 'k' appears twice"):
        await JWTVerifier(JWTConfig(jwks_file=path), clock=clock).open()


@pytest.mark.anyio
async def test_open_is_idempotent_and_aclose_forgets(jwks_file: str, clock: Clock, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JWTVerifier(JWTConfig(jwks_file=jwks_file, audience=AUDIENCE), clock=clock)
    await verifier.open()
    os.unlink(jwks_file)
    await verifier.open()  # already open: the file is not read again
    assert verifier.verify(sign(rsa_key)).id == "jwt:alice"
    await verifier.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        verifier.verify(sign(rsa_key))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "JWTConfig needs jwks_file"),
        ({"jwks_file": ""}, "JWTConfig.jwks_file must be a non-empty path"),
        ({"keys": "secret" * 8}, "JWTConfig.keys must be a tuple"),
        ({"keys": ("short",)}, r"JWTConfig.keys\[0\]: a shared secret must be at least 32 bytes"),
        ({"keys": ("-----BEGIN PRIVATE KEY-----\nabc\n",)}, r"JWTConfig.keys\[0\] is a private key"),
        ({"keys": (SECRET,), "algorithms": ()}, "JWTConfig.algorithms must name at least one"),
        ({"keys": (SECRET,), "algorithms": ("RS256", "none")}, "'none' is never accepted"),
        ({"keys": (SECRET,), "algorithms": ("HS256",)}, "asymmetric algorithms only"),
        ({"keys": (SECRET,), "algorithms": ("RS257",)}, "unknown algorithm 'RS257'"),
        ({"keys": (SECRET,), "algorithms": "RS256"}, "JWTConfig.algorithms must be a tuple"),
        ({"keys": (SECRET,), "issuer": ""}, "JWTConfig.issuer must be a non-empty string"),
        ({"keys": (SECRET,), "leeway": -1}, "JWTConfig.leeway must be >= 0"),
        ({"keys": (SECRET,), "models_claim": ""}, "JWTConfig.models_claim must be a non-empty claim name"),
    ],
)
def test_config_validation(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JWTConfig(**options)


def test_configured_keys_are_checked_by_the_verifier(
    ec_key: ec.EllipticCurvePrivateKey, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    with pytest.raises(ValueError, match=r"JWTConfig.keys\[0\] is not a valid PEM public key"):
        JWTVerifier(JWTConfig(keys=("-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n",)))
    with pytest.raises(ValueError, match=r"JWTConfig.keys\[1\]: JWTConfig.algorithms \['RS256'\] has no algorithm"):
        JWTVerifier(JWTConfig(keys=(SECRET, pem(ed_key)), algorithms=("RS256",)))
    JWTVerifier(JWTConfig(keys=(pem(ec_key),), algorithms=["ES256"]))  # type: ignore[arg-type]  # lists are fine


def test_secrets_stay_out_of_reprs() -> None:
    config = JWTConfig(keys=(SECRET,))
    assert SECRET not in repr(config)
    assert SECRET not in repr(JWTVerifier(config))


def test_without_pyjwt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(RuntimeError, match=r"JWT bearer tokens need PyJWT: pip install 'hfasgi\[jwt\]'"):
        JWTVerifier(JWTConfig(keys=(SECRET,)))


def test_hfasgi_auth_imports_without_pyjwt() -> None:
    code = "import sys; sys.modules['jwt'] = None; import hfasgi.auth, hfasgi.auth.jwt"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- looks_like_jwt --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_looks_like_jwt(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert verifier.looks_like_jwt(sign(rsa_key))
    assert verifier.looks_like_jwt("eyJhbGciOiJub25lIn0.e30.")
    for other in (
        "hfasgi_" + "A" * 43,
        "hf_abcdefghijklmnopqrstuvwxyz",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.extra",
        "eyJhbGciOiJSUzI1NiJ9..c2ln",
        "",
    ):
        assert not verifier.looks_like_jwt(other), other


# --- through ApiKeyAuth ----------------------------------------------------------------------------------


async def echo_principal(scope: Scope, receive: Receive, send: Send) -> None:
    principal = get_context(scope).principal
    body = json.dumps({"principal": principal.id if principal else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def client(verifier: JWTVerifier) -> httpx.AsyncClient:
    app = ApiKeyAuth(echo_principal, config=AuthConfig(jwt=verifier))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def chat(
    client: httpx.AsyncClient, token: str, model: str = "meta-llama/Llama-3.1-8B-Instruct"
) -> httpx.Response:
    async with client:
        return await client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {token}"},
        )


@pytest.mark.anyio
async def test_middleware_accepts_a_valid_token(client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey) -> None:
    response = await chat(client, sign(rsa_key, models=["meta-llama/*"], tasks=["chat-completion"]))
    assert response.status_code == 200
    assert response.json() == {"principal": "jwt:alice"}


@pytest.mark.anyio
async def test_middleware_refuses_an_expired_token(client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey) -> None:
    response = await chat(client, sign(rsa_key, exp=NOW - 3600))
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token: the token has expired", "error_type": "authentication"}
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.anyio
async def test_middleware_refuses_a_model_outside_the_token_scope(
    client: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    response = await chat(client, sign(rsa_key, models=["Qwen/*"]))
    assert response.status_code == 403
    assert response.json()["error_type"] == "permission"
    assert response.json()["error"].startswith("This token may not use model ")
    assert "meta-llama/Llama-3.1-8B-Instruct" in response.json()["error"]


@pytest.mark.anyio
async def test_middleware_without_a_key_store_refuses_api_keys(client: httpx.AsyncClient) -> None:
    response = await chat(client, "hfasgi_" + "A" * 43)
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid token: expected a signed bearer token (JWT)"


@pytest.mark.anyio
async def test_unusable_jwks_keys_are_skipped_with_a_warning(
    tmp_path: Path, clock: Clock, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_jwks(
        tmp_path / "mixed.json",
        {"kty": "RSA", "kid": "odd", "alg": "none"},
        {"kty": "EC", "kid": "bad", "crv": "P-999", "x": "AA", "y": "AA"},
        _jwk(RSAAlgorithm.to_jwk(rsa_key.public_key()), kid="rsa-1"),
    )
    verifier = await opened(JWTConfig(jwks_file=path), clock)
    assert verifier.verify(sign(rsa_key, aud=None)).id == "jwt:alice"
    assert verifier.verify(sign(rsa_key, kid=None, aud=None)).id == "jwt:alice"  # the only usable key
    assert "key 'odd' is ignored" in caplog.text and "key 'bad' is ignored" in caplog.text


@pytest.mark.anyio
async def test_cap_claims_become_the_principals_caps(verifier: JWTVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    principal = verifier.verify(sign(rsa_key, max_tokens=64, max_prompt_length=4000))
    assert (principal.max_tokens, principal.max_prompt_length) == (64, 4000)
    refused(verifier, sign(rsa_key, max_tokens="many"), "'max_tokens' claim is not a positive integer")
    refused(verifier, sign(rsa_key, max_prompt_length=0), "'max_prompt_length' claim is not a positive integer")
