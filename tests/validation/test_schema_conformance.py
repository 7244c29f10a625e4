"""Our schemas against the official ``@huggingface/tasks`` input specs (fetched with npm, see hf_tasks.py).

For every task spec: (a) we have a schema for it; (b) every property the spec defines, at any depth
(root, ``parameters``, object ``inputs``, ``generate_parameters``, ``stream_options``,
``response_format``, tools...), is known to our schema at the same path with a compatible JSON type;
(c) what we require, the spec requires too; (d) what the spec requires, we require (or accept in a
documented alternative). Deliberate differences are listed below with their reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hfasgi.validation.schemas import ROUTE_SCHEMAS, TASK_SCHEMAS
from tests.validation.hf_tasks import VERSION, load_spec, official_specs, spec_tasks

# The tasks with a spec in @huggingface/tasks 0.21.54 (hf_api.md §6.1); the package is checked against it.
SPEC_TASKS = (
    "audio-classification",
    "automatic-speech-recognition",
    "chat-completion",
    "depth-estimation",
    "document-question-answering",
    "feature-extraction",
    "fill-mask",
    "image-classification",
    "image-segmentation",
    "image-text-to-image",
    "image-text-to-video",
    "image-to-image",
    "image-to-text",
    "image-to-video",
    "object-detection",
    "question-answering",
    "sentence-similarity",
    "summarization",
    "table-question-answering",
    "text-classification",
    "text-generation",
    "text-to-audio",
    "text-to-image",
    "text-to-speech",
    "text-to-video",
    "token-classification",
    "translation",
    "video-classification",
    "visual-question-answering",
    "zero-shot-classification",
    "zero-shot-image-classification",
    "zero-shot-object-detection",
)

# (a) Spec tasks deliberately without a schema: none today. ("placeholder", the template, is never listed.)
NO_SCHEMA: dict[str, str] = {}

# (c) What we require beyond the spec. Key: (schema, field path); "a|b" is an at-least-one-of group.
EXTRA_REQUIRED: dict[tuple[str, str], str] = {
    # The spec makes `inputs` optional (prompt-only generation); we keep `inputs` required on every task body.
    ("image-text-to-image", "inputs|image"): "inputs kept required on every task body",
    ("image-text-to-video", "inputs|image"): "inputs kept required on every task body",
}

# (d) What the spec requires and we do not (always).
MISSING_REQUIRED: dict[tuple[str, str], str] = {
    # OpenAI custom tools / custom tool calls carry `custom` instead; we require `function` when type is "function".
    ("chat", "tools[].function"): "required only when type is 'function'",
    ("chat", "messages[].tool_calls[].function"): "required only when type is 'function'",
    # ...and tool_choice may also be OpenAI's {"type": "custom"|"allowed_tools", ...}.
    ("chat", "tool_choice.function"): "required for the function forms only",
}

ALL_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
Schema = dict[str, Any]
Path_ = tuple[str, ...]


@pytest.fixture(scope="module")
def specs() -> Path:
    return official_specs()


# --- reading schemas ---------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def types_of(node: Any) -> frozenset[str]:
    """The JSON types a schema node admits (``integer`` counted inside ``number``)."""
    if not isinstance(node, dict):
        return ALL_TYPES
    if "type" in node:
        kind = node["type"]
        result = frozenset([kind] if isinstance(kind, str) else kind)
    elif "const" in node:
        result = frozenset({_json_type(node["const"])})
    elif "enum" in node:
        result = frozenset(_json_type(v) for v in node["enum"])
    else:
        result = ALL_TYPES
    for keyword in ("anyOf", "oneOf"):
        if keyword in node:
            result &= frozenset().union(*(types_of(branch) for branch in node[keyword]))
    for branch in node.get("allOf", ()):
        result &= types_of(branch)
    return result | {"integer"} if "number" in result else result


def _branches(node: Any) -> Iterator[Schema]:
    """``node`` and every sub-schema that applies to the same instance (combinators, ``if``/``then``)."""
    if not isinstance(node, dict):
        return
    yield node
    for keyword in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(keyword, ()):
            yield from _branches(branch)
    for keyword in ("then", "else"):
        if keyword in node:
            yield from _branches(node[keyword])


def properties_of(nodes: Iterable[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for node in nodes:
        for branch in _branches(node):
            for name, sub in branch.get("properties", {}).items():
                found.setdefault(name, []).append(sub)
    return found


def items_of(nodes: Iterable[Any]) -> list[Any]:
    return [b["items"] for node in nodes for b in _branches(node) if isinstance(b.get("items"), dict)]


def _union(nodes: list[Any]) -> frozenset[str]:
    return frozenset().union(*(types_of(n) for n in nodes))


def spec_required(nodes: list[Any]) -> set[str]:
    """What a spec node requires of an object: its ``required``, ``allOf``'s, and what every object branch of
    ``oneOf``/``anyOf`` requires."""
    required: set[str] = set()
    for node in nodes:
        if not isinstance(node, dict):
            continue
        required |= set(node.get("required", ()))
        for branch in node.get("allOf", ()):
            required |= spec_required([branch])
        for keyword in ("oneOf", "anyOf"):
            objects = [b for b in node.get(keyword, ()) if "object" in types_of(b)]  # a null branch requires nothing
            if objects:
                required |= set.intersection(*(spec_required([b]) for b in objects))
    return required


def our_required(nodes: list[Any]) -> tuple[set[str], list[set[str]]]:
    """Our unconditional ``required`` and the at-least-one-of groups (``anyOf`` of bare ``required``)."""
    required: set[str] = set()
    groups: list[set[str]] = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        required |= set(node.get("required", ()))
        branches = node.get("anyOf", ())
        if branches and all(set(b) == {"required"} for b in branches):
            groups.append({name for b in branches for name in b["required"]})
    return required, groups


# --- the walk ----------------------------------------------------------------------------------


def _show(path: Path_) -> str:
    return ".".join(path).replace(".[]", "[]") or "<root>"


def walk(spec: list[Any], ours: list[Any], path: Path_ = ()) -> Iterator[tuple[Path_, list[Any], list[Any]]]:
    """Every (path, spec nodes, our nodes) pair at which the spec defines something."""
    yield path, spec, ours
    mine = properties_of(ours)
    for name, spec_nodes in properties_of(spec).items():
        if name in mine:
            yield from walk(spec_nodes, mine[name], (*path, name))
    spec_items = items_of(spec)
    if spec_items:
        yield from walk(spec_items, items_of(ours), (*path, "[]"))


def field_problems(spec: Schema, ours: Schema) -> list[str]:
    problems = []
    for path, spec_nodes, our_nodes in walk([spec], [ours]):
        mine = properties_of(our_nodes)
        for name, spec_sub in properties_of(spec_nodes).items():
            here = _show((*path, name))
            if name not in mine:
                problems.append(f"{here}: defined by the spec, unknown to our schema")
                continue
            spec_types, our_types = _union(spec_sub), _union(mine[name])
            if not spec_types & our_types:
                problems.append(f"{here}: spec types {sorted(spec_types)}, ours {sorted(our_types)}")
    return problems


def required_problems(name: str, spec: Schema, ours: Schema, used: set[tuple[str, str]] | None = None) -> list[str]:
    """Disagreements on required fields not covered by an exception (``used`` collects the exceptions hit)."""
    problems = []
    used = set() if used is None else used
    for path, spec_nodes, our_nodes in walk([spec], [ours]):
        theirs = spec_required(spec_nodes)
        required, groups = our_required(our_nodes)
        extra = [_show((*path, f)) for f in sorted(required - theirs)]
        extra += [
            _show((*path, "|".join(sorted(g, key=lambda f: (f != "inputs", f))))) for g in groups if not g & theirs
        ]
        alternatives = set().union(*groups) if groups else set()
        missing = [_show((*path, f)) for f in sorted(theirs - required - alternatives)]
        for keys, exceptions, what in (
            (extra, EXTRA_REQUIRED, "required by us, optional in the spec"),
            (missing, MISSING_REQUIRED, "required by the spec, optional for us"),
        ):
            for key in keys:
                if (name, key) in exceptions:
                    used.add((name, key))
                else:
                    problems.append(f"{key}: {what}")
    return problems


# --- the tests ---------------------------------------------------------------------------------


def test_the_package_has_the_expected_tasks(specs: Path) -> None:
    assert spec_tasks(specs) == sorted(SPEC_TASKS), f"@huggingface/tasks@{VERSION} changed its task list"


def test_every_spec_task_has_a_schema(specs: Path) -> None:
    missing = [t for t in spec_tasks(specs) if t not in TASK_SCHEMAS and t not in NO_SCHEMA]
    assert not missing, f"spec tasks without a schema (add one, or an entry in NO_SCHEMA): {missing}"


@pytest.mark.parametrize("task", SPEC_TASKS)
def test_spec_fields_are_known_with_a_compatible_type(specs: Path, task: str) -> None:
    if task in NO_SCHEMA:
        pytest.skip(NO_SCHEMA[task])
    problems = field_problems(load_spec(specs, task), TASK_SCHEMAS[task])
    assert not problems, f"{task}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("task", SPEC_TASKS)
def test_required_fields_agree_with_the_spec(specs: Path, task: str) -> None:
    if task in NO_SCHEMA:
        pytest.skip(NO_SCHEMA[task])
    name = "chat" if task == "chat-completion" else task
    problems = required_problems(name, load_spec(specs, task), TASK_SCHEMAS[task])
    assert not problems, f"{task}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(("route", "task"), [("chat", "chat-completion"), ("generate", "text-generation")])
def test_route_schema_against_its_spec(specs: Path, route: str, task: str) -> None:
    spec = load_spec(specs, task)
    problems = field_problems(spec, ROUTE_SCHEMAS[route]) + required_problems(route, spec, ROUTE_SCHEMAS[route])
    assert not problems, f"ROUTE_SCHEMAS[{route!r}] vs {task}:\n  " + "\n  ".join(problems)


def test_the_walk_reaches_nested_objects(specs: Path) -> None:
    """Guard against a walk that silently stops at the root."""
    paths = {_show(p) for p, _, _ in walk([load_spec(specs, "chat-completion")], [ROUTE_SCHEMAS["chat"]])}
    expected = {
        "stream_options",
        "response_format",
        "response_format.json_schema",
        "tools[]",
        "tools[].function",
        "tool_choice.function",
        "messages[].content[].image_url",
        "messages[].tool_calls[].function",
    }
    assert expected <= paths
    generated = {_show(p) for p, _, _ in walk([load_spec(specs, "text-to-speech")], [TASK_SCHEMAS["text-to-speech"]])}
    assert "parameters.generation_parameters" in generated


def test_every_exception_is_still_needed(specs: Path) -> None:
    used: set[tuple[str, str]] = set()
    for task in SPEC_TASKS:
        if task not in NO_SCHEMA:
            required_problems(
                "chat" if task == "chat-completion" else task, load_spec(specs, task), TASK_SCHEMAS[task], used
            )
    required_problems("generate", load_spec(specs, "text-generation"), ROUTE_SCHEMAS["generate"], used)
    stale = sorted((set(EXTRA_REQUIRED) | set(MISSING_REQUIRED)) - used)
    assert not stale, f"exceptions no longer needed (remove them): {stale}"
