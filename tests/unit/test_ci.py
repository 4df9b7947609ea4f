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
