"""Drift on a real apiserver: a reference sent with `truthloop reference`, captured inputs that
shift, and the operator's Drift condition on the ModelMonitor, as `kubectl` shows it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.envtest import ControlPlane
from tests.support.envtest_operator import TOKEN, Service, wait_until
from tests.support.k8s_objects import churn_monitor

pytestmark = pytest.mark.usefixtures("operator")


def inputs(n: int, seed: int, tenure: float) -> list[dict[str, Any]]:
    """The example monitor's features, tenure around `tenure` months."""
    rng = np.random.default_rng(seed)
    shifted = tenure > 20
    return [
        {
            "tenure": round(float(t), 2),
            "monthly_charges": round(float(c), 2),
            "contract": str(k),
            "support_calls": int(s),
            "prediction": int(t < 12),
        }
        for t, c, k, s in zip(
            rng.normal(tenure, 3.0, n),
            rng.normal(60.0, 10.0, n),
            rng.choice(["monthly", "yearly"], n, p=[0.2, 0.8] if shifted else [0.7, 0.3]),
            rng.poisson(2.0, n),
            strict=True,
        )
    ]


def post(service: Service, path: str, body: Any) -> None:
    request = urllib.request.Request(
        service.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def capture(service: Service, namespace: str, rows: list[dict[str, Any]], prefix: str) -> None:
    now = time.time()
    post(
        service,
        "/v1/predictions",
        [
            {
                "prediction_id": f"{prefix}{i}",
                "monitor": f"{namespace}/churn",
                "ts": now,
                "prediction": row.pop("prediction"),
                "features": row,
            }
            for i, row in enumerate(rows)
        ],
    )


def test_drift_shows_as_a_condition_naming_the_drifted_features(
    control_plane: ControlPlane, namespace: str, feedback_service: Service, tmp_path: Path
) -> None:
    control_plane.apply(churn_monitor(namespace))

    def condition() -> dict[str, Any]:
        status = control_plane.get("mm", "churn", "-n", namespace).get("status") or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "Drift"]
        return found[0] if found else {}

    assert wait_until(condition, "a Drift condition")["reason"] == "NoReference"
    rows = inputs(3000, 1, 12.0)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "token").write_text(TOKEN)
    command = [sys.executable, "-m", "truthloop", "reference", "-f", str(tmp_path / "train.csv")]
    command += [f"--monitor={namespace}/churn", f"--feedback-url={feedback_service.url}"]
    command += [f"--token-file={tmp_path / 'token'}"]
    sent = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr

    capture(feedback_service, namespace, inputs(1500, 2, 12.0), "a")
    calm = wait_until(lambda: condition().get("reason") == "NoDrift" and condition(), "no drift")
    assert calm["status"] == "False"
    capture(feedback_service, namespace, inputs(6000, 3, 30.0), "b")
    drifted = wait_until(
        lambda: condition().get("status") == "True" and condition(), "Drift True", within=20
    )
    assert drifted["reason"] == "DatasetDrift"
    assert "tenure" in drifted["message"]
    assert "contract" in drifted["message"]
    assert "monthly_charges" not in drifted["message"]
