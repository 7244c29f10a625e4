"""Schemas compiled once, and their first error said the way a person would: ``parameters.top_k: must be >= 1``.

The engine is ``jsonschema_rs`` (JSON Schema 2020-12, in Rust): a valid body costs one ``is_valid``
call (about a microsecond for a 10-message chat); only an invalid one pays for error collection.
Messages are rebuilt from the error *kind*, not taken from the library, so they stay stable and name
the field path; an ``anyOf``/``oneOf`` node may carry ``"x-error": "<message>"`` to replace the
generic "does not match any allowed form".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema_rs

__all__ = ["NOT_UNICODE", "CompiledSchema", "Violation", "field_path", "lone_surrogate"]

NOT_UNICODE = "is not valid Unicode (a lone surrogate such as \\ud800)"
TOO_DEEP = "the body is nested too deeply to be checked"

_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


class Violation(ValueError):
    """A body that does not match its schema: ``path`` (``parameters.top_k``) and a message for it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def field_path(parts: Sequence[str | int]) -> str:
    """``["messages", 2, "content"]`` → ``messages[2].content``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class CompiledSchema:
    """One schema, compiled at construction (start-up), checked per request with :meth:`check`."""

    __slots__ = ("_validator", "name", "schema")

    def __init__(self, schema: Mapping[str, Any], *, name: str = "") -> None:
        self.schema = schema
        self.name = name
        self._validator = jsonschema_rs.validator_for(dict(schema))

    def check(self, document: Any) -> None:
        """Raise :class:`Violation` (the most specific error) unless ``document`` matches."""
        try:
            if self._validator.is_valid(document):
                return
            errors = list(self._validator.iter_errors(document))
        except UnicodeEncodeError:  # jsonschema_rs cannot take a lone surrogate ("\ud800") in a key or a reported value
            raise Violation(lone_surrogate(document) or "", NOT_UNICODE) from None
        except ValueError:  # jsonschema_rs: "Recursion limit reached" explaining a document nested ~300 deep
            raise Violation("", TOO_DEEP) from None
        raise self._explain(_most_specific(errors))

    def _explain(self, error: Any) -> Violation:
        kind = error.kind
        keyword: str = kind.name
        detail = kind.as_dict()
        path = list(error.instance_path)
        if keyword == "required":
            return Violation(field_path([*path, detail["property"]]), "is required")
        if keyword == "additionalProperties":
            unexpected = sorted(detail["unexpected"])
            where = field_path([*path, unexpected[0]])
            if len(unexpected) == 1:
                return Violation(where, "is not a known parameter (check its spelling)")
            names = ", ".join(repr(u) for u in unexpected)
            return Violation(field_path(path), f"unknown parameters {names} (check their spelling)")
        return Violation(field_path(path), self._message(keyword, detail, error))

    def _message(self, keyword: str, detail: dict[str, Any], error: Any) -> str:
        if keyword == "type":
            types = [t for t in detail["types"] if t != "null"] or ["null"]
            names = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
            return f"must be {names}" + (" (or null)" if "null" in detail["types"] and len(detail["types"]) > 1 else "")
        if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[keyword]
            return f"must be {sign} {_number(detail['limit'])}"
        if keyword == "enum":
            options = [o for o in detail["options"] if o is not None]
            nullable = len(options) < len(detail["options"])
            return "must be one of " + ", ".join(_show(o) for o in options) + (" (or null)" if nullable else "")
        if keyword == "const":
            return f"must be {_show(detail['expected_value'])}"
        if keyword == "minItems":
            return "must not be empty" if detail["limit"] == 1 else f"must have at least {detail['limit']} items"
        if keyword == "maxItems":
            return f"must have at most {detail['limit']} items"
        if keyword == "minLength":
            return "must not be empty" if detail["limit"] == 1 else f"must be at least {detail['limit']} characters"
        if keyword == "maxLength":
            return f"must be at most {detail['limit']} characters"
        if keyword in ("minProperties", "maxProperties"):
            word = "at least" if keyword == "minProperties" else "at most"
            return f"must have {word} {detail['limit']} fields"
        if keyword == "uniqueItems":
            return "must not repeat items"
        if keyword == "pattern":
            return f"must match {detail['pattern']!r}"
        if keyword in ("anyOf", "oneOf", "oneOfNotValid", "oneOfMultipleValid", "not", "falseSchema"):
            annotated = _annotation(self.schema, list(error.schema_path))
            return annotated or "does not match any of the allowed forms"
        return "is not valid"


def _most_specific(errors: list[Any]) -> Any:
    """The error deepest in the document; among equals, a precise keyword over ``anyOf``/``oneOf``."""
    vague = {"anyOf", "oneOf", "oneOfNotValid", "oneOfMultipleValid", "not"}
    return max(errors, key=lambda e: (len(e.instance_path), e.kind.name not in vague))


def lone_surrogate(document: Any) -> str | None:
    """The path of the first key or string of ``document`` holding a lone surrogate (``None``: there is none).

    ``json.loads`` turns ``"\\ud800"`` into a string UTF-8 cannot encode: not Unicode text, refused by
    serde (TGI) upstream, and fatal to whatever re-encodes the body.
    """
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in reversed(node.items()):
                if _has_surrogate(key):
                    return field_path([*path, key.encode("utf-8", "backslashreplace").decode()])
                stack.append(([*path, key], value))
        elif isinstance(node, list):
            stack.extend(([*path, i], value) for i, value in reversed(list(enumerate(node))))
        elif isinstance(node, str) and _has_surrogate(node):
            return field_path(path)
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _annotation(schema: Mapping[str, Any], schema_path: list[Any]) -> str | None:
    """The ``x-error`` of the schema node an error points at (the path ends with the failing keyword)."""
    node: Any = schema
    for part in schema_path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    message = node.get("x-error") if isinstance(node, Mapping) else None
    return message if isinstance(message, str) else None


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)
