"""The CRD as a real apiserver takes it: it applies, and kubectl explains its fields."""

from __future__ import annotations

import asyncio

from tests.support.envtest import ControlPlane
from tests.support.waiting import eventually


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
