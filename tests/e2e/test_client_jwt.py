"""JWT bearer tokens through the reference app (``HFASGI_JWT_JWKS_FILE``), driven by real clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from jwt.algorithms import RSAAlgorithm

from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.upstream import FakeHF, expected_chat

ISSUER = "https://login.example.org/"
AUDIENCE = "hfasgi-gateway"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwt_gateway(gateway: Callable[..., str], signing_key: rsa.RSAPrivateKey, tmp_path: Path) -> str:
    """The reference app accepting tokens of the identity provider whose public key is in a JWKS file."""
    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}))
    return gateway(no_auth=False, jwt_jwks_file=str(path), jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def token(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "svc-search", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": "idp-1"}
    )


def test_a_signed_token_is_a_key(jwt_gateway: str, signing_key: rsa.RSAPrivateKey, fake: FakeHF) -> None:
    with InferenceClient(base_url=jwt_gateway, api_key=token(signing_key)) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=3)
    assert out.choices[0].message.content == expected_chat(MESSAGES, 3)
    assert "eyJ" not in fake.last("/v1/chat/completions").headers["authorization"]  # the token stays here


def test_expired_foreign_and_missing_tokens_are_401(jwt_gateway: str, signing_key: rsa.RSAPrivateKey) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        token(signing_key, exp=int(time.time()) - 3600): "Invalid token: the token has expired",
        token(signing_key, aud="someone-else"): "Invalid token:",
        token(stranger): "Invalid token: signature verification failed",
        "hfasgi_not-a-key-at-all": "Invalid token: expected a signed bearer token (JWT)",
    }
    for credential, message in cases.items():
        with (
            openai.OpenAI(base_url=f"{jwt_gateway}/v1", api_key=credential, max_retries=0) as client,
            pytest.raises(openai.AuthenticationError) as info,
        ):
            client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
        assert info.value.status_code == 401
        assert isinstance(info.value.body, str) and info.value.body.startswith(message), info.value.body


def test_token_claims_scope_and_limit_the_caller(jwt_gateway: str, signing_key: rsa.RSAPrivateKey) -> None:
    scoped = token(signing_key, sub="svc-limited", models=["org/*"], rate_limit="1/minute")
    with InferenceClient(base_url=jwt_gateway, api_key=scoped) as client:
        client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=1)  # org/chat-model is in scope
        with pytest.raises(HfHubHTTPError) as limited:
            client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=1)
        with pytest.raises(HfHubHTTPError) as forbidden:
            client.chat_completion(MESSAGES, model="other/model", max_tokens=1)
    assert "you have reached your 'api' rate limit" in str(limited.value)
    assert "'jwt:svc-limited'" in str(limited.value)
    assert "403 Forbidden: This token may not use model 'other/model'." in str(forbidden.value)
