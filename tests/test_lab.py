"""Local Jupyter, as `make lab` starts it: Jupyter Lab serves, it loads the widget manager that chapter 7's
explorer needs, it starts a Python kernel, and chapter 7's widget cell runs live in a kernel.

Jupyter Lab runs headless on a free local port with a token, with its settings, workspaces and runtime
files in a temporary folder, and never reaches the network (read-only extension manager). The chapter
runs in quick mode on the unit tests' offline data (see conftest.py), so it trains small models in
seconds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"
MYST = "jupyterlab-myst"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CHAPTER_7 = ROOT / "chapters" / "07_putting_together.ipynb"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running Jupyter Lab server: its base URL, token and log."""

    def __init__(self, url: str, token: str, log: Path):
        self.url, self.token, self.log = url, token, log

    def request(self, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str, method: str = "GET", body: dict | None = None):
        status, data = self.request(path, method, body)
        assert 200 <= status < 300, f"{method} {path}: HTTP {status}: {data[:300]!r}"
        return json.loads(data) if data else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    jupyter = BIN / "jupyter"
    if not (BIN / "jupyter-lab").exists():
        pytest.fail("Jupyter Lab is not installed: `make install` (requirements.txt lists jupyterlab)")
    home = tmp_path_factory.mktemp("jupyter")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(jupyter), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
           "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # as `make lab` does when run as root (a container)
    log = home / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if server.request("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_lab_needs_its_token(lab):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(lab.url + "/api/kernels", timeout=10)
    assert e.value.code == 403


def test_lab_loads_the_widget_manager(lab):
    """The Lab page's own configuration lists the widget manager as an enabled extension, and serves it."""
    status, html = lab.request(f"/lab?token={lab.token}")
    assert status == 200, status
    m = re.search(rb'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "the Lab page has no jupyter-config-data"
    config = json.loads(m.group(1))
    extensions = {e["name"]: e for e in config["federated_extensions"]}
    assert WIDGET_MANAGER in extensions, f"installed Lab extensions: {sorted(extensions)}"
    disabled = config.get("disabledExtensions") or {}
    assert WIDGET_MANAGER not in disabled, f"{WIDGET_MANAGER} is disabled: {disabled}"
    entry = extensions[WIDGET_MANAGER]["load"]
    status, js = lab.request(f"/lab/extensions/{WIDGET_MANAGER}/{entry}")
    assert status == 200 and len(js) > 100, (status, js[:200])


def test_lab_renders_markdown_with_jupyterlab_myst(lab):
    """The chapters' Markdown (admonitions, math, the {eval} numbers of the prose) needs jupyterlab-myst,
    enabled and served by the Lab that `make lab` starts."""
    status, html = lab.request(f"/lab?token={lab.token}")
    m = re.search(rb'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    config = json.loads(m.group(1))
    extensions = {e["name"]: e for e in config["federated_extensions"]}
    assert MYST in extensions, f"installed Lab extensions: {sorted(extensions)}"
    assert MYST not in (config.get("disabledExtensions") or {}), config.get("disabledExtensions")
    status, js = lab.request(f"/lab/extensions/{MYST}/{extensions[MYST]['load']}")
    assert status == 200 and len(js) > 100, (status, js[:200])


def test_labextension_list_shows_the_widget_manager_enabled():
    proc = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if WIDGET_MANAGER in line]
    assert lines, f"{WIDGET_MANAGER} missing from `jupyter labextension list`:\n{proc.stdout}{proc.stderr}"
    assert re.search(r"enabled.*OK", re.sub(r"\x1b\[[0-9;]*m", "", lines[0])), lines[0]


def _run_in_lab_kernel(lab: Lab, kernel_id: str, code: str) -> str:
    """Run ``code`` in a kernel of the Lab server, over its websocket as the Lab front end does; its stdout."""
    import uuid

    import websocket  # websocket-client, a dependency of jupyter_server

    ws = websocket.create_connection(f"{lab.url.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
                                     f"?token={lab.token}", timeout=60)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        out, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                pytest.fail(f"the Lab kernel raised {msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                return "".join(out)
        pytest.fail("the Lab kernel did not answer within 120 s")
    finally:
        ws.close()


def test_lab_kernel_runs_the_books_code(lab):
    """A kernel that Lab starts (the one a reader's notebook gets) imports vaelib and ipywidgets 8."""
    kernel = lab.json("/api/kernels", "POST", {"name": "python3"})
    try:
        out = _run_in_lab_kernel(lab, kernel["id"], "import ipywidgets, vaelib\nprint(ipywidgets.__version__)")
    finally:
        lab.request(f"/api/kernels/{kernel['id']}", "DELETE")
    assert out.strip().split(".")[0] == "8", out


# Runs in the kernel after the widget cell: move one slider of the live widget and report whether the
# image it shows changed (the explorer redraws from the kernel).
MOVE_A_SLIDER = """
import json
from ipywidgets import FloatSlider, Image
from ipywidgets.widgets.widget import _instances
def _walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _walk(c)
_root = _instances[MODEL_ID]
_sliders = [w for w in _walk(_root) if isinstance(w, FloatSlider)]
_images = [w for w in _walk(_root) if isinstance(w, Image)]
_before = [i.value for i in _images]
_sliders[0].value = _sliders[0].max
print(json.dumps({"sliders": len(_sliders), "images": len(_images),
                  "changed": [i.value for i in _images] != _before}))
"""


def test_chapter_7_widget_cell_runs_live_in_a_kernel(monkeypatch):
    """Chapter 7's code up to its widget cell (the one tagged widget-fallback), in quick mode, in a fresh
    kernel: the cell shows a live widget view with its static image, and moving a slider redraws it."""
    from nbclient import NotebookClient

    monkeypatch.setenv("VAELIB_QUICK", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    source = nbformat.read(CHAPTER_7, as_version=4)
    cells = [c for c in source.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(cells) if "widget-fallback" in c.metadata.get("tags", [])]
    assert tagged, "chapter 7 has no cell tagged widget-fallback (its interactive explorer)"
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    nb.cells = [nbformat.v4.new_code_cell(c.source) for c in cells[:tagged[0] + 1]]
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(CHAPTER_7.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)

        outputs = nb.cells[-1].outputs
        views = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
        assert views, f"the widget cell shows no live widget: {[list(o.get('data', {})) for o in outputs]}"
        assert "image/png" in views[0]["data"], "the widget output has no static image for a page without a kernel"

        model_id = views[0]["data"][WIDGET_VIEW]["model_id"]
        nb.cells.append(nbformat.v4.new_code_cell(MOVE_A_SLIDER.replace("MODEL_ID", repr(model_id))))
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    report = json.loads(nb.cells[-1].outputs[-1]["text"].strip().splitlines()[-1])
    assert report["sliders"] >= 1 and report["images"] >= 1, report
    assert report["changed"], "moving a slider did not change the explorer's image"
