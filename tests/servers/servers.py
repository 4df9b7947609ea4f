"""Real model servers as processes: found where scripts/model-servers installed them, serving a
scikit-learn model fitted by their own venv's python, on free 127.0.0.1 ports, waited for until
their model is ready, their output kept in a log file that a failure quotes.

A server that is not installed skips its tests with a message naming the command that installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.ports import free_port
from tests.support.waiting import eventually

HERE = Path(__file__).parent
MODEL = "churn"
"""The model's name on every server (the paths say it: /v2/models/churn/infer)."""
VERSION = "v1"
STAMP = "truthloop-pins.txt"
"""What scripts/model-servers writes into a venv last, once its pins are installed."""
READY_WITHIN = 90.0
"""Seconds a server may take to load its model (a few on an idle machine)."""


def venv(server: str) -> Path:
    """The venv scripts/model-servers installed `server` into, or a skip saying how to."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(cache) / "truthloop" / "servers" / server
    if not (path / STAMP).is_file():
        pytest.skip(
            f"{server} is not installed here ({path} has no {STAMP}): run scripts/model-servers "
            "(it installs the pinned versions from PyPI, a venv per server)"
        )
    return path


def run_in(path: Path, script: str, *args: str, stdin: Any = None) -> Any:
    """The JSON that `script` (a file next to this one) prints when run by venv `path`'s python,
    given `stdin` as JSON: how a test asks a server's own types and client about an answer."""
    done = subprocess.run(
        [str(path / "bin" / "python"), str(HERE / script), *args],
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{script} {args} failed:\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None


@dataclass
class Server:
    """A model server process on 127.0.0.1:`port`."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    grpc_port: int | None = None
    """Where it serves the Open Inference Protocol's gRPC, if it does."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serving(
    command: list[str],
    *,
    cwd: Path,
    port: int,
    ready: str,
    grpc_port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`command` started in its own session, yielded once GET `ready` answers 200; stopped (its
    whole process group) after."""
    log = cwd / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
    server = Server(port, process, log, grpc_port)
    try:
        asyncio.run(eventually(lambda: _ready(server, ready), f"{ready}", within=READY_WITHIN))
        yield server
    finally:
        _stop(process)


async def _ready(server: Server, path: str) -> bool:
    """Whether the server answers 200 at `path`; a server that exited fails with its log."""
    if server.process.poll() is not None:
        raise AssertionError(f"{server.process.args} exited:\n{server.output()}")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + path, timeout=aiohttp.ClientTimeout(total=2)) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def fitted(path: Path, where: Path) -> Path:
    """A LogisticRegression on 4 features fitted and saved by venv `path`, at `where`."""
    run_in(path, "fit_model.py", str(where))
    return where


@contextlib.contextmanager
def mlserver(tmp: Path) -> Iterator[Server]:
    """MLServer serving the model with its scikit-learn runtime (`predict` and, when a request
    asks for it in `outputs`, `predict_proba`); REST and gRPC on free ports of their own, no
    metrics server; `parallel_workers: 0` keeps inference in the server's process (MLServer 1.7.1's
    worker pool does not start with the current uvloop)."""
    path = venv("mlserver")
    model = tmp / MODEL
    model.mkdir(parents=True)
    fitted(path, model / "model.joblib")
    port, grpc_port = free_port(), free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_endpoint": None,
        "metrics_dir": str(tmp / "metrics"),
        "parallel_workers": 0,
    }
    (tmp / "settings.json").write_text(json.dumps(settings))
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": VERSION},
            }
        )
    )
    command = [str(path / "bin" / "mlserver"), "start", str(tmp)]
    ready = f"/v2/models/{MODEL}/ready"
    with serving(command, cwd=tmp, port=port, ready=ready, grpc_port=grpc_port) as server:
        yield server


@contextlib.contextmanager
def kserve(tmp: Path) -> Iterator[Server]:
    """KServe's model server (REST v1 and v2 on one port, no gRPC) serving the model as KServe's
    sklearn server does (kserve_model.py). It listens on every interface: its REST server binds
    0.0.0.0 whatever it is told."""
    path = venv("kserve")
    model = fitted(path, tmp / "model.joblib")
    port = free_port()
    command = [
        str(path / "bin" / "python"),
        str(HERE / "kserve_model.py"),
        f"--model_name={MODEL}",
        f"--model_path={model}",
        f"--http_port={port}",
        "--enable_latency_logging=false",
    ]
    with serving(command, cwd=tmp, port=port, ready=f"/v2/models/{MODEL}/ready") as server:
        yield server


@contextlib.contextmanager
def mlflow(tmp: Path) -> Iterator[Server]:
    """MLflow's scoring server (`mlflow models serve`, its own uvicorn app) serving the model
    saved as an MLflow model with a 4-column signature, from the venv itself (`--env-manager
    local`); it starts `uvicorn` by name, hence the venv's bin first on PATH."""
    path = venv("mlflow")
    model = tmp / "model"
    run_in(path, "mlflow_model.py", str(model))
    port = free_port()
    mlflow = str(path / "bin" / "mlflow")
    command = [mlflow, "models", "serve", "-m", str(model), "-h", "127.0.0.1", "-p", str(port)]
    bin_first = {"PATH": f"{path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    with serving(
        [*command, "--env-manager", "local"], cwd=tmp, port=port, ready="/ping", env=bin_first
    ) as server:
        yield server
