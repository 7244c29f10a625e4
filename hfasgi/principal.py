"""Who is calling: the :class:`Principal` that authentication puts in the request context."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hfasgi.limits import Limit

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated caller: an id, what it may use, and its own limits.

    ``models`` are exact ids or shell-style patterns (``meta-llama/*``); ``tasks`` are HF task names
    (``chat-completion``, ``feature-extraction``, ...). ``None`` means "no restriction". Limits left
    ``None`` fall back to the rate limiter's defaults.
    """

    id: str
    """A stable, non-secret id (a key's name, ``jwt:<sub>``, ``anonymous:<address>``): what limits count by."""
    models: tuple[str, ...] | None = None
    tasks: frozenset[str] | None = None
    rate_limit: Limit | None = None
    token_limit: Limit | None = None
    max_tokens: int | None = None
    """The most output tokens one request may ask for (``None``: no cap)."""
    max_prompt_length: int | None = None
    """The longest prompt one request may send, in characters (``None``: no cap)."""
    source: str = "key"
    """How it was authenticated: ``key``, ``jwt`` or ``anonymous``."""
    admin: bool = False
    """May administer the gateway (map models into the catalog, read other keys' usage)."""
    _model_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_prompt_length"):
            cap = getattr(self, name)
            if cap is not None and (type(cap) is not int or cap < 1):
                raise ValueError(f"{name} must be a positive integer, got {cap!r}")
        if self.models is not None:
            pattern = "|".join(fnmatch.translate(m) for m in self.models) or r"(?!)"
            object.__setattr__(self, "_model_re", re.compile(pattern))

    @classmethod
    def restricted(
        cls,
        id: str,
        *,
        models: Iterable[str] | None = None,
        tasks: Iterable[str] | None = None,
        rate_limit: Limit | str | None = None,
        token_limit: Limit | str | None = None,
        max_tokens: int | None = None,
        max_prompt_length: int | None = None,
        source: str = "key",
        admin: bool = False,
    ) -> Principal:
        """A principal from loose values (lists, limit strings), as found in key files and token claims."""
        return cls(
            id=id,
            models=tuple(models) if models is not None else None,
            tasks=frozenset(tasks) if tasks is not None else None,
            rate_limit=Limit.parse(rate_limit) if isinstance(rate_limit, str) else rate_limit,
            token_limit=Limit.parse(token_limit) if isinstance(token_limit, str) else token_limit,
            max_tokens=max_tokens,
            max_prompt_length=max_prompt_length,
            source=source,
            admin=admin,
        )

    @property
    def scoped(self) -> bool:
        """Whether the principal is restricted to some models or tasks."""
        return self.models is not None or self.tasks is not None

    def allows_model(self, model: str) -> bool:
        """Whether ``model`` (a client-facing id, without a ``:provider`` suffix) is in scope."""
        return self._model_re is None or self._model_re.fullmatch(model) is not None

    def allows_task(self, task: str | None) -> bool:
        """Whether ``task`` is in scope (an unknown task is in scope only when tasks are unrestricted)."""
        return self.tasks is None or (task is not None and task in self.tasks)
