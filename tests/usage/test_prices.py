"""The price table: integer nano-USD per token and per request, from TOML, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfasgi.usage.prices import Price, PriceTable


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_prices_by_model_with_a_default(tmp_path: Path) -> None:
    table = PriceTable.from_toml(
        write(
            tmp_path,
            """
["meta-llama/Llama-3.1-8B-Instruct"]
input_nano_usd_per_token = 50
output_nano_usd_per_token = 150

["BAAI/bge-small-en-v1.5"]
nano_usd_per_request = 10000

["*"]
output_nano_usd_per_token = 7
""",
        )
    )
    assert table.cost("meta-llama/Llama-3.1-8B-Instruct", 100, 50) == 100 * 50 + 50 * 150
    assert table.cost("BAAI/bge-small-en-v1.5", 12345, 0) == 10000
    assert table.cost("someone/else", 10, 3) == 21
    assert table.cost(None, 10, 3) == 21


def test_models_may_sit_under_a_models_table_and_unpriced_models_are_free(tmp_path: Path) -> None:
    table = PriceTable.from_toml(write(tmp_path, '[models."org/m"]\ninput_nano_usd_per_token = 2\n'))
    assert table.cost("org/m", 5, 100) == 10
    assert table.cost("org/other", 5, 100) == 0
    assert PriceTable().cost("org/m", 10**9, 10**9) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["m"]\ninput_nano_usd_per_token = 0.5\n', "whole number of nano-USD"),
        ('["m"]\ninput_nano_usd_per_token = -1\n', "whole number of nano-USD"),
        ('["m"]\ninput_nano_usd_per_token = true\n', "whole number of nano-USD"),
        ('["m"]\nprice = 3\n', "unknown fields \\['price'\\]"),
        ("m = 3\n", "must be a table"),
        ("[m\n", "price file"),
    ],
)
def test_mistakes_name_the_file_and_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceTable.from_toml(write(tmp_path, text))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="price file .*nope.toml"):
        PriceTable.from_toml(tmp_path / "nope.toml")


@given(
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), max_size=50),
    st.integers(0, 10**4),
    st.integers(0, 10**4),
    st.integers(0, 10**6),
)
def test_sums_are_exact_integers(tokens: list[tuple[int, int]], per_in: int, per_out: int, per_request: int) -> None:
    price = Price(per_in, per_out, per_request)
    total = sum(price.cost(i, o) for i, o in tokens)
    assert isinstance(total, int)
    assert total == len(tokens) * per_request + per_in * sum(i for i, _ in tokens) + per_out * sum(o for _, o in tokens)
