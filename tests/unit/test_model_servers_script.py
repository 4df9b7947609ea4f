"""scripts/model-servers: a venv whose stamp lists its pins is left as it is (CI runs the script
before every e2e run, so a run with the servers installed must cost nothing), and an unknown
server is refused."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model-servers"


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The script as a module, its cache under tmp_path, unable to start a process."""
    loader = importlib.machinery.SourceFileLoader("model_servers", str(SCRIPT))
    spec = importlib.util.spec_from_loader("model_servers", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    return module


def installed(module: ModuleType, server: str, stamp: str) -> Path:
    venv = module.root() / server
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / module.STAMP).write_text(stamp)
    return venv


def test_a_venv_stamped_with_its_pins_is_left_as_it_is(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = installed(script, "mlserver", "\n".join(script.PINS["mlserver"]) + "\n")
    assert script.main(["mlserver"]) == 0
    assert capsys.readouterr().out == f"mlserver {venv}\n"


def test_a_venv_stamped_with_other_pins_is_reinstalled(script: ModuleType) -> None:
    installed(script, "kserve", "kserve==0.14.0\n")
    with pytest.raises(AssertionError, match="venv"):
        script.main(["kserve"])


def test_an_unknown_server_is_refused_naming_the_known_ones(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main(["triton"]) == 2
    assert capsys.readouterr().err == "unknown server 'triton': one of mlserver, kserve, mlflow\n"


def test_every_server_is_pinned_to_exact_versions(script: ModuleType) -> None:
    assert set(script.PINS) == {"mlserver", "kserve", "mlflow"}
    assert all("==" in pin for pins in script.PINS.values() for pin in pins)
