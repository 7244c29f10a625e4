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
    """Upstream request headers from the client's: filtered, plus the gateway's token and request id.

    Headers the client's ``Connection`` names are hop-by-hop too (RFC 9110 §7.6.1) and are dropped.
    """
    out: dict[str, str] = {}
    named: set[bytes] = set()
    for name, value in raw:
        lname = name.lower()
        if lname not in _DROP_REQUEST:
            key = lname.decode("latin-1")
            previous = out.get(key)
            # a repeated header is one comma-separated list (RFC 9110 §5.3)
            out[key] = value.decode("latin-1") if previous is None else f"{previous}, {value.decode('latin-1')}"
        elif lname == b"connection":
            named.update(_options(value))
    for option in named:
        out.pop(option.decode("latin-1"), None)
    if token:
        out["authorization"] = "Bearer " + token
    if request_id:
        out["x-request-id"] = request_id
    return out


def response_headers(raw: Headers | tuple[tuple[bytes, bytes], ...], secret: str | None = None) -> Headers:
    """Client response headers from the upstream's raw headers (lower-cased, filtered).

    Headers the upstream's ``Connection`` names are dropped too; ``secret`` (the upstream token), if
    the upstream echoed it in a header value, is redacted.
    """
    out: Headers = []
    named: set[bytes] = set()
    token = secret.encode("latin-1") if secret else None
    for name, value in raw:
        lname = name.lower()
        if lname in _DROP_RESPONSE:
            if lname == b"connection":
                named.update(_options(value))
            continue
        if token is not None and token in value:
            value = value.replace(token, b"[redacted]")
        out.append((lname, value))
    return [h for h in out if h[0] not in named] if named else out


def _options(connection: bytes) -> list[bytes]:
    """The header names listed in a ``Connection`` value (lower-cased)."""
    return [option.strip().lower() for option in connection.split(b",") if option.strip()]
