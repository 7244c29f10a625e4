"""A time-bounded fuzzing run of the body parser and the validator (tests/validation/fuzz_target.py).

With atheris (coverage-guided libFuzzer) the target runs in a subprocess for ``HFASGI_FUZZ_SECONDS``
(default 20, at most 30), seeded with valid bodies of every route and task and a dictionary of the
schemas' keys; the test asserts it ran (libFuzzer's ``Done N runs``, N over a floor) and found no crash.
Without atheris (or with ``HFASGI_FUZZ_ENGINE=hypothesis``) the same property runs in process under
hypothesis, batch after batch until the time is up: never skipped.

The property (``fuzz_target.Harness.check``): no exception but the 4xx ``GatewayError``/``Violation``
of the parser and the engine; one ``http.response.start`` then body messages, status < 500; the
envelope on errors; the inner app reached only by bodies the independent ``jsonschema`` accepts (or
raw media of the task's kind); refusals only of bodies it refuses; a capped principal's maximum kept.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.validation import fuzz_target as ft

TARGET = Path(__file__).with_name("fuzz_target.py")
ROOT = Path(__file__).resolve().parents[2]
SECONDS = min(30.0, max(1.0, float(os.environ.get("HFASGI_FUZZ_SECONDS", "20"))))
"""The fuzzing budget, in seconds (``HFASGI_FUZZ_SECONDS``; capped at 30 so the suite stays fast)."""
ENGINE = os.environ.get("HFASGI_FUZZ_ENGINE") or ("atheris" if importlib.util.find_spec("atheris") else "hypothesis")
"""``atheris`` when it is importable (or asked for), else ``hypothesis``."""
QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
MIN_RUNS_PER_SECOND = 100
"""A floor far below what either engine does (atheris: thousands of inputs a second), to catch a run that stalled."""


def _seeds(directory: Path) -> int:
    count = ft.write_seeds(directory)
    assert count >= 2 * len(ft.cases()), f"too few seed bodies: {count}"
    return count


@pytest.mark.skipif(
    ENGINE != "atheris",
    reason="the engine is hypothesis (atheris missing, or HFASGI_FUZZ_ENGINE): test_fuzz_with_hypothesis runs",
)
def test_fuzz_with_atheris(tmp_path: Path) -> None:
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    _seeds(seeds)
    corpus.mkdir()
    dictionary = tmp_path / "schema.dict"
    ft.write_dictionary(dictionary)
    command = [
        sys.executable,
        str(TARGET),
        f"-max_total_time={int(SECONDS)}",
        "-rss_limit_mb=2048",
        "-timeout=10",
        "-max_len=4096",
        f"-dict={dictionary}",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
        str(corpus),
        str(seeds),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=SECONDS + 60, env=env, cwd=ROOT)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    tail = output[-6000:]
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert done.returncode == 0 and not crashes, (
        f"the fuzzer found a crash ({crashes}, exit {done.returncode}):\n{tail}"
    )
    assert "Uncaught Python exception" not in output, tail
    found = re.search(r"^Done (\d+) runs in (\d+) second", output, re.MULTILINE)
    assert found, f"no 'Done N runs' line:\n{tail}"
    runs = int(found.group(1))
    assert runs >= MIN_RUNS_PER_SECOND * SECONDS, f"only {runs} runs in {elapsed:.0f}s:\n{tail}"
    assert elapsed < SECONDS + 45, f"the run took {elapsed:.0f}s for a budget of {SECONDS:.0f}s"
    assert any(corpus.iterdir()), "libFuzzer kept no input: the target gave it no coverage to follow"


@pytest.mark.skipif(ENGINE == "atheris", reason="the engine is atheris: test_fuzz_with_atheris runs instead")
def test_fuzz_with_hypothesis() -> None:
    runs = _fuzz_with_hypothesis(SECONDS)
    assert runs >= MIN_RUNS_PER_SECOND * SECONDS / 4, f"only {runs} inputs in {SECONDS:.0f}s"


def _fuzz_with_hypothesis(budget: float) -> int:
    """``check_one`` on hypothesis inputs (seeds mutated, and raw bytes), batch after batch for ``budget`` seconds."""
    all_cases = ft.cases()
    seeds = [(i, body) for i, case in enumerate(all_cases) for body in ft.seed_bodies(case)]
    tokens = sorted({'"', "{", "}", "[", "]", ":", ",", "null", "NaN", "-Infinity", "1e999", "\\ud800", "\\udfff"})
    spliced = st.builds(
        _splice,
        st.sampled_from(seeds),
        st.integers(0, 4095),
        st.integers(0, 16),
        st.lists(st.sampled_from(tokens) | st.text(max_size=6), max_size=4),
    )
    inputs = st.one_of(
        st.builds(
            ft.encode_input,
            st.integers(0, len(all_cases) - 1),
            st.integers(0, len(ft.CONTENT_TYPES)),
            st.integers(0, 255),
            spliced | st.binary(max_size=512),
        ),
        st.binary(max_size=600),
    )
    harness = ft.Harness()
    deadline = time.monotonic() + budget
    batch = 0
    try:
        while time.monotonic() < deadline:

            @seed(batch)
            @settings(max_examples=400, deadline=None, database=None, suppress_health_check=QUIET)
            @given(inputs)
            def run(data: bytes) -> None:
                if time.monotonic() < deadline:
                    harness.check(data)

            run()
            batch += 1
    finally:
        harness.close()
    return harness.runs


def _splice(seed: tuple[int, bytes], at: int, cut: int, inserted: list[str]) -> bytes:
    body = seed[1]
    at %= len(body) + 1
    return body[:at] + "".join(inserted).encode("utf-8", "surrogatepass") + body[at + cut :]


def test_the_harness_catches_a_validator_that_lets_invalid_bodies_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fuzz property is not vacuous: with the schema check switched off, an invalid body fails it twice."""
    harness = ft.Harness()
    try:
        index = next(i for i, c in enumerate(ft.cases()) if c.name == "generate")
        bad = json.dumps({"inputs": "hi", "parameters": {"top_k": 0}}).encode()
        harness.check(ft.encode_input(index, 1, 0, bad))  # the real validator refuses it: the property holds
        assert harness.forwarded == 0
        monkeypatch.setattr(type(harness.config._compiled["generate"]), "check", lambda self, document: None)
        with pytest.raises(AssertionError, match="jsonschema_rs accepted what jsonschema refuses"):
            harness.check(ft.encode_input(index, 1, 0, bad))
        with pytest.raises(AssertionError, match="a schema-invalid JSON object was forwarded"):
            harness._through_layer(ft.cases()[index], "application/json", 0, bad)
    finally:
        harness.close()
