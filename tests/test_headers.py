"""Which headers cross the gateway: credentials and hop-by-hop headers never do; repeated ones stay whole."""

from __future__ import annotations

from hfasgi.forwarding.headers import request_headers, response_headers


def test_client_credentials_and_hop_by_hop_headers_stay_at_the_gateway() -> None:
    raw = [
        (b"Authorization", b"Bearer client-key"),
        (b"x-api-key", b"client-key"),
        (b"cookie", b"session=1"),
        (b"connection", b"keep-alive, x-private"),
        (b"x-private", b"hop"),
        (b"host", b"gateway:8000"),
        (b"content-length", b"12"),
        (b"X-HF-Bill-To", b"my-org"),
        (b"x-request-id", b"client-chosen"),
    ]
    out = request_headers(raw, "hf_server", "rid-1")
    assert out == {"x-hf-bill-to": "my-org", "authorization": "Bearer hf_server", "x-request-id": "rid-1"}


def test_no_server_token_means_no_authorization_upstream() -> None:
    assert "authorization" not in request_headers([(b"authorization", b"Bearer client-key")], None, "")


def test_a_repeated_request_header_is_forwarded_as_one_list() -> None:
    raw = [(b"accept", b"text/event-stream"), (b"Accept", b"application/json"), (b"x-tag", b"a")]
    assert request_headers(raw, None, "") == {"accept": "text/event-stream, application/json", "x-tag": "a"}


def test_response_headers_drop_hop_by_hop_and_redact_an_echoed_token() -> None:
    raw = (
        (b"Content-Type", b"application/json"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Connection", b"x-upstream-only"),
        (b"x-upstream-only", b"1"),
        (b"X-Echo", b"Bearer hf_server"),
        (b"set-cookie", b"upstream=1"),
        (b"x-compute-time", b"0.01"),
    )
    assert response_headers(raw, "hf_server") == [
        (b"content-type", b"application/json"),
        (b"x-echo", b"Bearer [redacted]"),
        (b"x-compute-time", b"0.01"),
    ]
