"""An LLM judge for reasoning errors, over any OpenAI-compatible chat endpoint, cached on disk.

Works with `vllm serve <instruct model>` (http://host:8000/v1), OpenAI, or anything that speaks
POST /v1/chat/completions. The prompt is fixed and documented (docs/analysis.md) so a reported
count can be reproduced. Every reply is stored under `cache_dir`, keyed by the judge model and a
hash of the exact messages: re-running the analysis makes no request for a sample already judged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from analysis.atomic import write_text

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a careful grader of grade-school math solutions. Answer only in JSON."

USER_PROMPT = """Problem:
{question}

Reference solution:
{reference}

Student's solution:
{response}

The student's final answer is wrong or missing. Does the student's solution contain a REASONING
error: a wrong plan or set-up, a misread or ignored fact of the problem, a wrong choice of
operation, or a missing step? Calculation slips (such as 12*7=82) and answer-format problems
(such as a missing "#### <answer>" line) do NOT count as reasoning errors.

Reply with one line of JSON and nothing else:
{{"reasoning_error": true or false, "explanation": "<one short sentence>"}}"""

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_KEY_VALUE = re.compile(r"reasoning[_ ]error\W{0,4}(true|false|yes|no)\b", re.IGNORECASE)
_LEADING = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


class JudgeError(RuntimeError):
    """The endpoint could not be used (unreachable, HTTP error, not an OpenAI-style reply)."""


@dataclass(frozen=True)
class JudgeCase:
    question: str
    reference: str
    response: str


@dataclass
class JudgeConfig:
    url: str  # base URL, e.g. http://localhost:8000/v1 (or the full .../chat/completions)
    model: str
    cache_dir: Path
    api_key: str | None = None
    workers: int = 4
    timeout_s: float = 120.0
    retries: int = 3
    max_tokens: int = 200
    progress: bool = True


def endpoint(url: str) -> str:
    """Accept `http://h:8000`, `http://h:8000/v1` or the full chat-completions URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return f"{url}/chat/completions" if url.endswith("/v1") else f"{url}/v1/chat/completions"


def messages(case: JudgeCase) -> list[dict[str, str]]:
    user = USER_PROMPT.format(question=case.question.strip(), reference=case.reference.strip(),
                              response=case.response.strip())  # fmt: skip
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> bool | None:
    """True/False for reasoning_error, or None when the reply cannot be read.

    Accepts the requested JSON (also inside a ```json fence or surrounded by prose),
    `reasoning_error: yes`, or a reply starting with yes/no.
    """
    for match in re.finditer(r"\{[^{}]*\}", reply):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        value = obj.get("reasoning_error") if isinstance(obj, dict) else None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "yes", "no"}:
            return value.strip().lower() in {"true", "yes"}
    if m := _KEY_VALUE.search(reply) or _LEADING.search(reply):
        return m.group(1).lower() in {"true", "yes"}
    return None


class Judge:
    """Judges cases through the endpoint; `calls` counts HTTP requests actually made."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.url = endpoint(config.url)
        self.calls = 0
        self._lock = threading.Lock()

    def _cache_path(self, body: dict[str, Any]) -> Path:
        prompt_sha = hashlib.sha256(
            json.dumps(body["messages"], sort_keys=True).encode()
        ).hexdigest()
        key = hashlib.sha256(f"{self.config.model}\n{prompt_sha}".encode()).hexdigest()
        return self.config.cache_dir / key[:2] / f"{key}.json"

    def _body(self, case: JudgeCase) -> dict[str, Any]:
        return {"model": self.config.model, "messages": messages(case), "temperature": 0.0,
                "max_tokens": self.config.max_tokens}  # fmt: skip

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        data = json.dumps(body).encode()
        for attempt in range(self.config.retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            with self._lock:
                self.calls += 1
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return str(payload["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as e:
                if e.code not in _RETRY_STATUS or attempt == self.config.retries:
                    detail = e.read().decode("utf-8", "replace")[:300]
                    raise JudgeError(
                        f"judge endpoint {self.url} answered HTTP {e.code}: {detail}"
                    ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.config.retries:
                    raise JudgeError(f"judge endpoint {self.url} unreachable: {e}") from None
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                raise JudgeError(
                    f"judge endpoint {self.url} did not answer in the OpenAI chat format ({e!r})"
                ) from None
            time.sleep(min(2.0**attempt, 10.0))
        raise AssertionError("unreachable")

    def _judge_one(self, case: JudgeCase) -> str:
        body = self._body(case)
        path = self._cache_path(body)
        if path.is_file():
            try:
                return str(json.loads(path.read_text(encoding="utf-8"))["reply"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                log.warning("judge cache entry %s unreadable; asking again", path)
        reply = self._post(body)
        record = {"model": self.config.model, "messages": body["messages"], "reply": reply}
        write_text(path, json.dumps(record, ensure_ascii=False))
        return reply

    def verdicts(self, cases: list[JudgeCase], desc: str = "judging") -> list[bool | None]:
        """reasoning_error per case (None: unreadable reply), cached replies reused."""
        workers = max(1, self.config.workers)
        # Identical cases (same question and response) are asked once: with parallel workers
        # both copies would otherwise miss the cache together and be paid for twice.
        unique = list(dict.fromkeys(cases))
        with ThreadPoolExecutor(workers) as pool:
            replies = list(tqdm(pool.map(self._judge_one, unique), total=len(unique), desc=desc,
                                leave=False, disable=not self.config.progress))  # fmt: skip
        by_case = dict(zip(unique, replies, strict=True))
        out = [parse_verdict(by_case[c]) for c in cases]
        unread = sum(v is None for v in out)
        if unread:
            log.warning("%d of %d judge replies could not be parsed", unread, len(out))
        return out
