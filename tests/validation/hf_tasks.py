"""The official task specs of npm ``@huggingface/tasks``, fetched at test time (never copied into the repo).

:func:`official_specs` runs ``npm pack`` once into ``~/.cache/hfasgi-tests/hf-tasks/<version>/`` and
extracts the tarball there; :func:`load_spec` returns a spec with its ``$ref`` resolved and the
OpenAPI ``nullable`` turned into JSON Schema type unions (docs/hf_api.md §6.2).

No npm, or no registry: the tests that need the specs are skipped, except with ``CI=true`` where
they fail, so CI cannot go green without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["PACKAGE", "VERSION", "cache_dir", "load_spec", "official_specs", "spec_tasks"]

PACKAGE = "@huggingface/tasks"
VERSION = "0.21.54"

_MARKER = "common-definitions.json"


def cache_dir(version: str = VERSION) -> Path:
    """Where one version is kept: ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``hfasgi-tests/hf-tasks/<v>``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hfasgi-tests" / "hf-tasks" / version


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: the official specs are required)", pytrace=False)
    pytest.skip(reason)


def official_specs(version: str = VERSION) -> Path:
    """The ``src/tasks`` directory of ``@huggingface/tasks@<version>``, fetched with npm on first use."""
    root = cache_dir(version)
    tasks = root / "package" / "src" / "tasks"
    if (tasks / _MARKER).is_file():
        return tasks
    npm = shutil.which("npm")
    if npm is None:
        _unavailable(f"npm is not installed: cannot fetch {PACKAGE}@{version}")
    root.mkdir(parents=True, exist_ok=True)
    command = [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", str(root), "--loglevel=error"]
    try:
        done = subprocess.run(
            command, cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"`npm pack {PACKAGE}@{version}` could not run: {exc}")
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        detail = next((line for line in lines if "code" not in line and "log of this run" not in line), "no output")
        _unavailable(f"`npm pack {PACKAGE}@{version}` failed ({done.returncode}): {detail.strip()}")
    names = [line.strip() for line in done.stdout.splitlines() if line.strip().endswith(".tgz")]
    tarball = root / (names[-1] if names else f"huggingface-tasks-{version}.tgz")
    if not tarball.is_file():
        _unavailable(f"`npm pack` left no tarball in {root}")
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        try:
            (staging / "package").rename(root / "package")
        except OSError:
            if not (tasks / _MARKER).is_file():  # not a concurrent run that got there first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (tasks / _MARKER).is_file():
        pytest.fail(f"{PACKAGE}@{version} has no src/tasks/{_MARKER}: the package layout changed", pytrace=False)
    return tasks


def spec_tasks(tasks: Path) -> list[str]:
    """Every task with a ``spec/input.json`` in the package (the ``placeholder`` template excluded)."""
    return sorted(
        p.parent.parent.name for p in tasks.glob("*/spec/input.json") if p.parent.parent.name != "placeholder"
    )


@cache
def _documents(tasks: Path) -> dict[str, Any]:
    """Every JSON document of the package by its ``$id`` (``/inference/schemas/...``)."""
    documents: dict[str, Any] = {}
    for path in sorted(tasks.rglob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and isinstance(document.get("$id"), str):
            documents[document["$id"]] = document
    return documents


def load_spec(tasks: Path, task: str, kind: str = "input") -> dict[str, Any]:
    """``<task>/spec/<kind>.json`` with every ``$ref`` inlined, ``nullable`` normalised, ``$defs`` dropped."""
    path = tasks / task / "spec" / f"{kind}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    resolved = _resolve(document, document, _documents(tasks), ())
    assert isinstance(resolved, dict)
    return resolved


def _pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/") if p]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _resolve(node: Any, document: Any, documents: dict[str, Any], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, document, documents, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        target_id, _, pointer = ref.partition("#")
        target = documents[target_id] if target_id else document
        key = f"{target.get('$id', '')}#{pointer}"
        if key in stack:
            raise ValueError(f"recursive $ref {ref!r}")
        out = dict(_resolve(_pointer(target, pointer), target, documents, (*stack, key)))
        out.update({k: _resolve(v, document, documents, stack) for k, v in node.items() if k != "$ref"})
        return _normalise_nullable(out)
    out = {
        key: _resolve(value, document, documents, stack)
        for key, value in node.items()
        if key not in ("$defs", "definitions")
    }
    return _normalise_nullable(out)


def _normalise_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI ``"nullable": true`` → ``null`` in ``type`` (or an ``anyOf`` with null when untyped)."""
    if not node.pop("nullable", False):
        return node
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    kind = node.get("type")
    if kind is None:
        return {"anyOf": [node, {"type": "null"}]} if node else node
    kinds = [kind] if isinstance(kind, str) else list(kind)
    node["type"] = kinds if "null" in kinds else [*kinds, "null"]
    return node
