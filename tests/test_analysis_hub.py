"""`python -m analysis.hub`: results pushed to a dataset repo, against a local mock of the hub."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analysis import hub


class MockHub(BaseHTTPRequestHandler):
    """The three calls a dataset upload makes: create the repo, ask upload modes, commit."""

    repos: dict[str, dict[str, bytes]] = {}
    calls: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _base(self) -> str:
        return f"http://{self.headers['Host']}"

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append(self.path)
        if self.headers.get("authorization") != "Bearer hf_test":
            return self._reply(401, {"error": "bad token"})
        if self.path == "/api/repos/create":
            spec = json.loads(data)
            repo = (
                f"{spec['organization']}/{spec['name']}"
                if spec.get("organization")
                else spec["name"]
            )
            self.repos.setdefault(repo, {})
            return self._reply(200, {"url": f"{self._base()}/datasets/{repo}", "name": repo})
        parts = self.path.split("/")  # /api/datasets/<org>/<name>/<verb>/<revision>
        repo, verb = f"{parts[3]}/{parts[4]}", parts[5]
        if repo not in self.repos:
            return self._reply(404, {"error": "no such repo"})
        if verb == "preupload":
            files = json.loads(data)["files"]
            return self._reply(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]})  # fmt: skip
        if verb == "commit":
            for line in data.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    value = entry["value"]
                    self.repos[repo][value["path"]] = base64.b64decode(value["content"])
            return self._reply(200, {"commitUrl": f"{self._base()}/datasets/{repo}/commit/1",
                                     "commitOid": "1" * 40, "success": True})  # fmt: skip
        return self._reply(404, {"error": self.path})


@pytest.fixture
def mock_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)  # the hub is local here
    MockHub.repos, MockHub.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MockHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _analysed(tmp_path):
    out = tmp_path / "exp" / "analysis"
    (out / "figures").mkdir(parents=True)
    (out / "fits.csv").write_text("model,inv_b\nm,0.1\n")
    (out / "report.md").write_text("# report\n")
    (out / "figures" / "fig1.png").write_bytes(b"\x89PNG fake")
    (out / "tables").mkdir()
    (out / "tables" / "fits.tex").write_text("\\begin{table}\n")  # was left behind
    (out / ".fits.csv.tmp123").write_text("partial")  # a temp file stays local
    return tmp_path / "exp"


def test_push_uploads_the_results_in_one_commit(mock_hub, tmp_path):
    run = _analysed(tmp_path)
    url = hub.push(run, "lab/sah-results", endpoint=mock_hub, token="hf_test")
    assert url.endswith("/commit/1")
    assert MockHub.repos["lab/sah-results"] == {
        "fits.csv": b"model,inv_b\nm,0.1\n",
        "report.md": b"# report\n",
        "figures/fig1.png": b"\x89PNG fake",
        "tables/fits.tex": b"\\begin{table}\n",
    }
    assert sum("/commit/" in c for c in MockHub.calls) == 1


def test_a_refused_push_is_one_error(mock_hub, tmp_path, capsys):
    run = _analysed(tmp_path)
    with pytest.raises(hub.PushError, match="lab/x"):
        hub.push(run, "lab/x", endpoint=mock_hub, token="hf_wrong")


def test_nothing_analysed_is_named(tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    assert hub.main([str(tmp_path / "exp"), "--repo-id", "lab/x", "--dry_run"]) == 2
    assert "run `python -m analysis" in capsys.readouterr().err


def test_dry_run_lists_the_files(tmp_path, capsys):
    run = _analysed(tmp_path)
    assert hub.main([str(run), "--repo_id", "lab/x", "--dry-run"]) == 0
    assert capsys.readouterr().out.split() == [
        str(run / "analysis" / p)
        for p in ("figures/fig1.png", "fits.csv", "report.md", "tables/fits.tex")
    ]


def test_an_unreachable_or_offline_hub_is_one_line(tmp_path, capsys, monkeypatch):
    run = _analysed(tmp_path)
    # offline (HF_HUB_OFFLINE=1, as in these tests), then a hub nobody listens on
    assert hub.main([str(run), "--repo_id", "lab/x"]) == 2
    assert capsys.readouterr().err.startswith("error: pushing ")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert hub.main([str(run), "--repo_id", "lab/x", "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "http://127.0.0.1:9" in capsys.readouterr().err
