"""Test helpers for the analysis package: a stub OpenAI-compatible judge and GSM8K outputs."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from analysis.synthetic import write_eval, write_manifest

QUESTION = "A box holds 12 rows of 7 eggs. Sam adds 5 eggs. How many eggs are there?"
REFERENCE = "There are 12*7 = <<12*7=84>>84 eggs.\nWith 5 more: 84+5 = <<84+5=89>>89.\n#### 89"

# hand-written responses and the deterministic categories they must get
GSM8K_CASES: dict[str, tuple[str, set[str]]] = {
    "correct": (" 12*7 = 84 eggs in rows.\n84+5 = 89 eggs.\n#### 89", set()),
    "arithmetic": (" 12*7 = 82 eggs in rows.\n82+5 = 87 eggs.\n#### 87", {"arithmetic"}),
    "no_final_answer": (" 12*7 = 84 eggs in rows, and 84+5 = 89 eggs. So 89 eggs.", {"format"}),
    # every step holds, but the set-up adds the rows instead of multiplying: only a judge sees it
    "reasoning": (" 12+7 = 19 eggs in rows.\n19+5 = 24 eggs.\n#### 24", set()),
    "arithmetic_and_format": (" 12*7 = 80 eggs, plus 5 is 85.", {"arithmetic", "format"}),
}


def write_gsm8k_checkpoint(root: Path, n: int, cases: list[str]) -> Path:
    """A checkpoint `root/exp/llama-3-8b/gsm8k/n<n>` whose sah_gsm8k samples are `cases`."""
    ckpt = root / "exp" / "llama-3-8b" / "gsm8k" / f"n{n}"
    write_manifest(ckpt, "exp", "llama-3-8b", "gsm8k", n)
    doc = {"question": QUESTION, "answer": REFERENCE}
    lines = []
    for filt in ("strict-match", "flexible-extract"):
        for i, name in enumerate(cases):
            text = GSM8K_CASES[name][0]
            strict = text.split("####")[-1].strip() if "####" in text else "[invalid]"
            extracted = strict if filt == "strict-match" else text.rstrip(".").split()[-1]
            lines.append({
                "doc_id": i, "doc": doc, "target": REFERENCE, "arguments": {},
                "resps": [[text]], "filtered_resps": [extracted], "filter": filt,
                "metrics": ["exact_match"], "doc_hash": "", "prompt_hash": "", "target_hash": "",
                "exact_match": float(extracted == "89"),
            })  # fmt: skip
    write_eval(ckpt, "sah_gsm8k", lines)
    return ckpt


@dataclass
class StubJudge:
    """A local OpenAI-compatible /v1/chat/completions server that records every request.

    It answers `reasoning_error: true` when the student's solution matches the regex `marker`.
    """

    marker: str = r"12\+7"
    fail_first: int = 0  # answer HTTP 503 to this many requests first (to test retries)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __enter__(self) -> StubJudge:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.paths.append(self.path)
                stub.headers.append(dict(self.headers))
                stub.requests.append(body)
                if stub.fail_first > 0:
                    stub.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                student = body["messages"][-1]["content"].split("Student's solution:")[1]
                verdict = re.search(stub.marker, student) is not None
                content = f'Sure. ```json\n{{"reasoning_error": {json.dumps(verdict)}, "explanation": "x"}}\n```'
                reply = {"id": "1", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]}  # fmt: skip
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
