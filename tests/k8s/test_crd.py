"""The CRD as a real apiserver takes it: it applies, and kubectl explains its fields."""

from __future__ import annotations

import asyncio
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.envtest import ControlPlane
from tests.support.feedback import monitor_body
from tests.support.waiting import eventually
from truthloop.core.spec import SpecError, parse_monitor


def test_the_crd_applies_and_kubectl_explains_the_spec(
    control_plane: ControlPlane, crd: str
) -> None:
    def explained() -> str:
        done = control_plane.kubectl("explain", "modelmonitors.spec", check=False)
        return done.stdout if done.returncode == 0 else ""

    # the apiserver publishes a new CRD's OpenAPI a moment after it is Established
    text = asyncio.run(eventually(explained, "kubectl explain modelmonitors.spec"))
    assert "ModelMonitor" in text
    assert "<no description>" not in text
    for field in ("model", "task", "alerts", "capture"):
        assert f"\n  {field}\t" in text, f"spec.{field} missing from:\n{text}"


BOUNDS = [
    # (spec path, the longest accepted, the shortest refused, the limit the message names)
    ("metrics.window", "2160h", "90d1s", "90d"),
    ("feedback.attributionWindow", "90d", "99999999999d", "90d"),
    ("alerts.0.for", "6d24h", "604801s", "7d"),
    ("fallback.recoverAfter", "7d", "10081m", "7d"),
]


def _monitor(path: str, value: str) -> dict[str, Any]:
    body = monitor_body(namespace="default")
    node: Any = body["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[leaf] = value
    return body


@pytest.mark.parametrize(("path", "longest", "refused", "limit"), BOUNDS)
def test_a_duration_past_its_bound_is_refused_naming_the_field_and_the_limit(
    control_plane: ControlPlane, crd: str, path: str, longest: str, refused: str, limit: str
) -> None:
    """The rules run as the real apiserver runs them (within its CEL cost budget), and agree
    with spec.py at the bound."""
    field = "spec." + path.replace(".0.", "[0].")

    def dry_run(value: str) -> subprocess.CompletedProcess[str]:
        manifest = yaml.safe_dump(_monitor(path, value))
        return control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=manifest, check=False
        )

    accepted = dry_run(longest)
    assert accepted.returncode == 0, accepted.stderr
    parse_monitor(_monitor(path, longest))
    done = dry_run(refused)
    assert done.returncode != 0
    assert f"{field}: Invalid value" in done.stderr, done.stderr
    assert f"must be at most {limit}" in done.stderr, done.stderr
    with pytest.raises(SpecError, match=re.escape(f"{field}: must be at most {limit}")):
        parse_monitor(_monitor(path, refused))
