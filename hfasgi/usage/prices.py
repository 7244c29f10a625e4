"""What a request costs, in integer nano-USD (1 nano-USD = 10⁻⁹ USD): a price table per model id.

The table is a TOML file (``HFASGI_PRICES``), one table per model id, with integers only::

    ["meta-llama/Llama-3.1-8B-Instruct"]
    input_nano_usd_per_token = 50       # 0.05 USD per million input tokens
    output_nano_usd_per_token = 150

    ["BAAI/bge-small-en-v1.5"]
    nano_usd_per_request = 10000        # a task priced per call, whatever its size

    ["*"]                               # any model not named (optional; without it, unnamed models cost 0)
    output_nano_usd_per_token = 100

The same tables may sit under a ``[models]`` table. Sums are integers end to end: no float ever
enters a cost, so totals over millions of records are exact.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NANO_PER_USD", "Price", "PriceTable"]

NANO_PER_USD = 1_000_000_000
_FIELDS = ("input_nano_usd_per_token", "output_nano_usd_per_token", "nano_usd_per_request")


@dataclass(frozen=True, slots=True)
class Price:
    """One model's price: per input token, per output token, and per request (all nano-USD, integers)."""

    input_nano_usd_per_token: int = 0
    output_nano_usd_per_token: int = 0
    nano_usd_per_request: int = 0

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """The nano-USD cost of one request that used these tokens."""
        return (
            self.nano_usd_per_request
            + input_tokens * self.input_nano_usd_per_token
            + output_tokens * self.output_nano_usd_per_token
        )


_FREE = Price()


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model id, with an optional ``"*"`` default; a model with no price costs 0."""

    prices: Mapping[str, Price] = field(default_factory=dict)

    def price(self, model: str | None) -> Price:
        """The price of ``model`` (the ``"*"`` entry, or free, when it has none of its own)."""
        prices = self.prices
        if model is not None:
            found = prices.get(model)
            if found is not None:
                return found
        return prices.get("*", _FREE)

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> int:
        """The nano-USD cost of a request of ``model`` that used these tokens."""
        return self.price(model).cost(input_tokens, output_tokens)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], source: str = "prices") -> PriceTable:
        """A table from parsed TOML (``{model: {field: int}}``, maybe under ``models``); ``ValueError`` if wrong."""
        models = document.get("models", document) if isinstance(document.get("models"), Mapping) else document
        prices: dict[str, Price] = {}
        for model, entry in models.items():
            if not isinstance(entry, Mapping):
                raise ValueError(f"{source}: [{model!r}] must be a table of {', '.join(_FIELDS)}")
            unknown = sorted(set(entry) - set(_FIELDS))
            if unknown:
                raise ValueError(f"{source}: [{model!r}] has unknown fields {unknown}; known: {', '.join(_FIELDS)}")
            values: dict[str, int] = {}
            for name, value in entry.items():
                if type(value) is not int or value < 0:
                    raise ValueError(
                        f"{source}: [{model!r}] {name} must be a whole number of nano-USD >= 0, got {value!r}"
                    )
                values[name] = value
            prices[model] = Price(**values)
        return cls(prices)

    @classmethod
    def from_toml(cls, path: str | Path) -> PriceTable:
        """Load a price file (see the module docstring); ``ValueError`` with the file and entry on a mistake."""
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"price file {str(path)!r}: {exc}") from exc
        return cls.from_mapping(document, f"price file {str(path)!r}")
