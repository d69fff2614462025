"""OpenAI-compatible server backend (vllm serve, llama.cpp's server, hosted APIs), over plain httpx.

Why httpx and not the `openai` client: scoring reads fields outside the typed OpenAI models (prompt-token
log-probs that only `echo` returns, which the `openai` client types loosely and hosted APIs dropped), and the
retry policy asked for (429/5xx/timeouts, exponential backoff, Retry-After) is a dozen lines here, while the
client's own retries still leave concurrency to us. httpx is one small dependency; a thread pool gives the
bounded concurrency, since `httpx.Client` is thread-safe and the work is waiting on the network.

Chats go to /chat/completions (the server applies the model's chat template), plain prompts to /completions;
every request carries its own `seed`. A chat ending with an assistant message (a prefill the model continues)
is sent with vLLM's `continue_final_message`; servers without that parameter reject it in one line.

Scoring uses /completions with `echo: true, logprobs: 1`: the server returns every prompt token with its
log-probability and character offset, and the continuation is the tokens that start at or after the end of
the context. The server tokenizes context + continuation as one text, so a token that straddles the boundary
is left out (rare: prompts end in a newline or a colon). A choice is scored by appending it to the prompt and
reading the last prompt token, one request per choice: exact for any choice, where the top-k log-probs of a
generated token would miss unlikely answers. Servers that cannot echo prompt log-probs get a one-line error.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from synthgen.errors import UserError
from synthgen.llm.spec import public_spec
from synthgen.llm.base import Completion, Prompt, SamplingParams, ScoreRequest, Scores

MAX_RETRY_AFTER = 600.0  # seconds: a longer wait asked by a server is cut to this


def retry_after(value: str) -> float | None:
    """Seconds a Retry-After header asks for, in either of its forms (RFC 9110): a number of seconds, or an
    HTTP date; None when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from datetime import datetime, timezone
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def warn_plain_http(url: str, secret: str | None) -> None:
    """Say so when a secret (an API key, or credentials in the URL) would cross the network unencrypted."""
    import ipaddress
    import sys
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    secret = secret or ("the credentials in the URL" if parts.password or parts.username else None)
    if parts.scheme != "http" or secret is None:
        return
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        print(f"warning: {secret} is sent unencrypted over http to {host}; use https", file=sys.stderr)


class OpenAILLM:
    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
    ):
        import httpx

        self.model = model
        self.base_url = base_url.rstrip("/")
        self.shown_url = public_spec(self.base_url)  # what messages and the manifest say: no credentials
        self.name = f"openai:{model}@{self.shown_url}"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff  # seconds before the first retry; doubled after each
        key = os.environ.get(api_key_env)
        warn_plain_http(self.base_url, f"the API key in ${api_key_env}" if key else None)
        self.client = httpx.Client(
            base_url=self.base_url + "/",
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            limits=httpx.Limits(max_connections=concurrency),
        )
        try:  # fail at once, in one line, when nothing answers there
            self.client.get("models", timeout=min(timeout, 10.0))
        except httpx.TransportError as exc:
            raise UserError(f"cannot reach the LLM server at {self.shown_url} ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict) -> dict:
        """POST with retries on 429, 5xx, timeouts and dropped connections; other HTTP errors are final."""
        import httpx

        delay = self.backoff
        for attempt in range(self.max_retries + 1):
            wait = delay
            try:
                response = self.client.post(path, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                detail = " ".join(response.text.split())[:300]
                if response.status_code < 400:
                    return self._json(response, path, detail)
                problem = f"HTTP {response.status_code}: {detail}"
                if response.status_code != 429 and response.status_code < 500:
                    raise UserError(f"LLM server {self.shown_url}/{path} refused the request ({problem})")
                asked = retry_after(response.headers.get("retry-after", ""))
                if asked is not None:  # the server's own wait, jittered upward only
                    wait = max(wait, asked / 0.8)
            if attempt == self.max_retries:
                break
            time.sleep(wait * random.uniform(0.8, 1.2))  # jitter: concurrent threads do not retry in step
            delay *= 2
        raise UserError(f"LLM server {self.shown_url}/{path} failed {self.max_retries + 1} times ({problem})")

    def _json(self, response, path: str, detail: str) -> dict:
        """A success's body, which must be a JSON object with choices: a proxy's HTML page is one line, not a crash."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
            raise UserError(f"LLM server {self.shown_url}/{path} answered HTTP {response.status_code} without the "
                            f"expected JSON choices ({detail[:120] or 'empty body'})")
        return body

    def _map(self, fn, items: list) -> list:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    # ---- generation ----------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, seeds: Sequence[int]) -> list[Completion]:
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        common = {"model": self.model, "max_tokens": params.max_tokens, "temperature": params.temperature,
                  "top_p": params.top_p}
        if params.stop:
            common["stop"] = list(params.stop)

        def one(item) -> Completion:
            prompt, seed = item
            if isinstance(prompt, str):
                reply = self._post("completions", {**common, "prompt": prompt, "seed": int(seed)})
                text = reply["choices"][0]["text"]
            else:
                body = {**common, "messages": list(prompt), "seed": int(seed)}
                if prompt[-1]["role"] == "assistant":  # a prefill: vLLM's parameters to continue it
                    body.update(continue_final_message=True, add_generation_prompt=False)
                reply = self._post("chat/completions", body)
                text = reply["choices"][0]["message"]["content"] or ""
            usage = reply.get("usage") or {}
            return Completion(text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

        return self._map(one, list(zip(prompts, seeds)))

    # ---- scoring -------------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scores]:
        jobs = []  # (request index, choice or None): the continuation, then each choice appended
        for i, request in enumerate(requests):
            jobs += [(i, None)] if not request.choices else [(i, c) for c in request.choices]
        logprobs = self._map(lambda job: self._echo(requests[job[0]], job[1]), jobs)
        tokens: dict[int, tuple[float, ...]] = {}
        choices: dict[int, dict[str, float]] = {i: {} for i in range(len(requests))}
        for (i, choice), (cont_lps, choice_lp) in zip(jobs, logprobs):
            tokens.setdefault(i, cont_lps)
            if choice is not None:
                choices[i][choice] = choice_lp
        return [Scores(tokens[i], choices[i]) for i in range(len(requests))]

    def _echo(self, request: ScoreRequest, choice: str | None) -> tuple[tuple[float, ...], float]:
        prompt = request.context + request.continuation + (choice or "")
        reply = self._post("completions", {"model": self.model, "prompt": prompt, "max_tokens": 1,
                                           "temperature": 0.0, "echo": True, "logprobs": 1})
        lp = reply["choices"][0].get("logprobs") or {}
        offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
        if not offsets or not values or len(offsets) != len(values):
            raise UserError(f"LLM server {self.shown_url} does not return prompt log-probs (/completions with "
                            "echo and logprobs), which scoring needs; vllm serve does")
        start, end = len(request.context), len(request.context) + len(request.continuation)
        prompt_part = [(o, v) for o, v in zip(offsets, values) if o < len(prompt)]
        continuation = tuple(float(v) for o, v in prompt_part if start <= o < end and v is not None)
        if choice is None:
            return continuation, 0.0
        if prompt_part[-1][0] != end:
            raise UserError(f"score choice {choice!r} is not one token at the end of the prompt for this model")
        return continuation, float(prompt_part[-1][1])
