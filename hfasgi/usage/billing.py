"""The billing endpoints of the provider task API (shapes of ``provider_tasks_api.md``, "Billing").

``GET {prefix}billing/usage?limit=100&offset=0[&key_id=K]``: the caller's own usage records, newest
first, with ``total_records`` and ``total_cost_nano_usd`` over all of them (an admin key may name
another key with ``key_id``). ``POST {prefix}billing/cost`` with ``{"requests": [{"task", "model",
"input_tokens", "output_tokens"}]}`` prices requests without running them. Every amount is an integer
of nano-USD; ``cost_usd`` is given beside it for reading, never summed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from hfasgi.body import read_body
from hfasgi.context import get_context
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.local import send_json
from hfasgi.types import Receive, Scope, Send
from hfasgi.usage.prices import NANO_PER_USD, PriceTable

if TYPE_CHECKING:
    from hfasgi.principal import Principal

__all__ = ["COST_BODY_LIMIT", "MAX_COST_REQUESTS", "MAX_PAGE", "send_cost", "send_usage"]

MAX_PAGE = 1000
"""The most records one ``billing/usage`` page returns."""
MAX_COST_REQUESTS = 10_000
"""The most requests one ``billing/cost`` call prices."""
COST_BODY_LIMIT = 4 * 1024 * 1024
_FLUSH_WAIT = 2.0
"""Seconds ``billing/usage`` waits for records still on their way to the database (read your writes)."""
_MAX_TOKENS = 10**12


def _bad(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)


async def send_usage(scope: Scope, send: Send, ledger: Any, principal: Principal | None) -> None:
    """Answer ``GET billing/usage`` from ``ledger`` (a :class:`~hfasgi.usage.ledger.UsageLedger`)."""
    if scope["method"] != "GET":
        raise GatewayError(405, ErrorType.METHOD_NOT_ALLOWED, "Use GET for billing/usage")
    limit, offset, named = _page(scope.get("query_string", b""))
    key_id = principal.id if principal is not None else None
    if named is not None and named != key_id:
        if principal is not None and not principal.admin:
            raise GatewayError(
                403, "permission", f"Key {principal.id!r} may read only its own usage: another key's needs an admin key"
            )
        key_id = named
    with contextlib.suppress(TimeoutError, OSError):  # the database is slow or down: answer with what it has
        await asyncio.wait_for(ledger.flush(), _FLUSH_WAIT)
    try:
        page = await ledger.query(key_id, limit, offset)
    except Exception as exc:
        raise GatewayError(
            503, "unavailable", f"The usage database cannot be read right now ({type(exc).__name__}); retry later"
        ) from None
    records = [record.to_wire() for record in page.records]
    await send_json(
        send,
        200,
        {"records": records, "total_records": page.total_records, "total_cost_nano_usd": page.total_cost_nano_usd},
    )


def _page(query_string: bytes) -> tuple[int, int, str | None]:
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _bad("The query string is not valid (UTF-8, percent-encoded)") from None
    unknown = sorted(set(query) - {"limit", "offset", "key_id"})
    if unknown:
        raise _bad(f"Unknown query parameter {unknown[0]!r} (known: key_id, limit, offset)")

    def number(name: str, default: int, low: int, high: int) -> int:
        values = query.get(name)
        if not values:
            return default
        text = values[-1].strip()
        if not text.isdigit() or not low <= int(text) <= high:
            raise _bad(f"{name} must be a whole number from {low} to {high}, got {text[:32]!r}")
        return int(text)

    named = query.get("key_id")
    key = named[-1] if named else None
    if key is not None and not key.strip():
        raise _bad("key_id must not be empty")
    return number("limit", 100, 1, MAX_PAGE), number("offset", 0, 0, 10**12), key


async def send_cost(scope: Scope, receive: Receive, send: Send, prices: PriceTable) -> None:
    """Answer ``POST billing/cost``: the price of each request listed, and their total."""
    await read_body(scope, receive, COST_BODY_LIMIT)
    document = get_context(scope).json()
    if not isinstance(document, dict) or not isinstance(document.get("requests"), list):
        raise _bad('The body must be {"requests": [{"task", "model", "input_tokens", "output_tokens"}, ...]}')
    requests: list[Any] = document["requests"]
    if len(requests) > MAX_COST_REQUESTS:
        raise _bad(f"requests: at most {MAX_COST_REQUESTS} per call, got {len(requests)}")
    costs = []
    total = 0
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            raise _bad(f"requests[{index}] must be an object")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise _bad(f"requests[{index}].model must be a model id")
        task = request.get("task")
        if task is not None and not isinstance(task, str):
            raise _bad(f"requests[{index}].task must be a string")
        tokens = []
        for name in ("input_tokens", "output_tokens"):
            value = request.get(name, 0)
            if type(value) is not int or not 0 <= value <= _MAX_TOKENS:
                raise _bad(f"requests[{index}].{name} must be a whole number from 0 to {_MAX_TOKENS}")
            tokens.append(value)
        cost = prices.cost(model, tokens[0], tokens[1])
        total += cost
        costs.append({**request, "cost_nano_usd": cost, "cost_usd": cost / NANO_PER_USD})
    await send_json(send, 200, {"total_cost_nano_usd": total, "costs": costs, "currency": "USD"})
