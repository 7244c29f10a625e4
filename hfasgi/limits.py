"""Limits such as ``60/minute``: a count per fixed window, parsed once from settings or key records."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Limit"]

_UNITS = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hr", "hour"), 3600),
    **dict.fromkeys(("d", "day"), 86400),
}
_FORM = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` units (requests or tokens) per window of ``window`` seconds."""

    count: int
    window: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a limit's count must be >= 1, got {self.count}")
        if self.window < 1:
            raise ValueError(f"a limit's window must be >= 1 second, got {self.window}")

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``"60/minute"``, ``"100000/hour"``, ``"10/30s"``, ``"5/2m"`` → a :class:`Limit`.

        Units: ``s``/``sec``/``second``, ``m``/``min``/``minute``, ``h``/``hr``/``hour``, ``d``/``day``
        (plural allowed).
        Raises ``ValueError`` naming the accepted forms.
        """
        match = _FORM.fullmatch(text.lower()) if isinstance(text, str) else None
        unit = _UNITS.get(match.group(3)) if match else None
        if match is None or unit is None:
            raise ValueError(f"invalid limit {text!r}: expected '<count>/<unit>' such as '60/minute' or '10/30s'")
        multiple = int(match.group(2)) if match.group(2) else 1
        return cls(int(match.group(1)), multiple * unit)

    def __str__(self) -> str:
        for name, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if self.window == seconds:
                return f"{self.count}/{name}"
        return f"{self.count}/{self.window}s"
