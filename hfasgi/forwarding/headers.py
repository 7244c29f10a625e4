"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

from hfasgi.types import Headers

__all__ = ["request_headers", "response_headers"]

# Never forwarded upstream: hop-by-hop headers, the client's credentials (the gateway sends its own
# token), the client-to-gateway hop's addressing, and encodings (the gateway reads bodies decoded).
_DROP_REQUEST = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization te trailer trailers transfer-encoding "
    b"upgrade host content-length authorization cookie x-api-key accept-encoding expect forwarded "
    b"x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port x-real-ip x-request-id".split()
)

# Never passed back to the client: hop-by-hop headers, what the server in front sets itself, cookies
# and policies that belong to the upstream's origin, and the upstream's request id (the gateway's wins).
_DROP_RESPONSE = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization te trailer trailers transfer-encoding "
    b"upgrade content-length content-encoding date server set-cookie x-request-id alt-svc "
    b"strict-transport-security access-control-allow-origin access-control-allow-credentials "
    b"access-control-allow-headers access-control-allow-methods access-control-expose-headers "
    b"access-control-max-age vary".split()
)


def request_headers(raw: Headers, token: str | None, request_id: str) -> dict[str, str]:
    """Upstream request headers from the client's: filtered, plus the gateway's token and request id."""
    out: dict[str, str] = {}
    for name, value in raw:
        lname = name.lower()
        if lname not in _DROP_REQUEST:
            out[lname.decode("latin-1")] = value.decode("latin-1")
    if token:
        out["authorization"] = "Bearer " + token
    if request_id:
        out["x-request-id"] = request_id
    return out


def response_headers(raw: Headers | tuple[tuple[bytes, bytes], ...]) -> Headers:
    """Client response headers from the upstream's raw headers (lower-cased, filtered)."""
    return [(n, v) for n, v in ((name.lower(), value) for name, value in raw) if n not in _DROP_RESPONSE]
