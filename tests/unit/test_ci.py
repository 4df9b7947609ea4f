"""CI checks the types of the whole package, with the tools the test extra installs."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_mypy_over_the_package_before_the_tests() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "mypy" in lines, "CI runs mypy bare, so [tool.mypy] decides what it checks"
    assert lines.index("mypy") < len(lines) - 1
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["mypy"]["files"] == ["truthloop"]
    assert any(dep.startswith("mypy") for dep in config["project"]["optional-dependencies"]["test"])


def test_ci_installs_the_model_servers_before_the_e2e_tier_and_carries_on_without_them() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    [install] = [line for line in lines if line.startswith("scripts/model-servers")]
    assert "||" in install, "a registry outage skips tests/servers, it does not fail CI"
    assert lines.index(install) < lines.index("pytest -m e2e")
    assert (ROOT / "scripts" / "model-servers").stat().st_mode & 0o111
