"""Send ground truth to truthloop's feedback service: by prediction ID, by entity ID, and votes.

It asks the example churn model three questions through the sidecar, then labels the answers the
three ways a label source can:

1. by prediction ID — exact: the `X-Prediction-ID` the sidecar put on the answer;
2. by entity ID — what a CRM knows: "customer X churned"; it labels the customer's latest
   prediction made within the monitor's `attributionWindow` before the actual's timestamp;
3. a vote — a reviewer says the prediction was right (`up`) or wrong (`down`), with no label.

Capture is asynchronous, so an actual may reach the service before its prediction does: it is then
`pending` and joins when the prediction arrives. The script ends by reading each customer's
predictions back (`GET .../predictions?entity_id=`) once all three carry their label.

Try it against `truthloop run` (standard library only, no truthloop import needed):

    python -m truthloop.examples.churn_model --port 9000 &
    truthloop run -f examples/monitor-churn.yaml --model-url http://127.0.0.1:9000 &
    python examples/send_feedback.py --sidecar http://127.0.0.1:8080 \\
        --feedback http://127.0.0.1:8081 --monitor default/churn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

CUSTOMERS = {
    "a": {"tenure": 2, "monthly_charges": 99.5, "contract": "month-to-month", "support_calls": 4},
    "b": {"tenure": 60, "monthly_charges": 25.0, "contract": "two-year", "support_calls": 0},
    "c": {"tenure": 14, "monthly_charges": 80.0, "contract": "one-year", "support_calls": 1},
}


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One JSON request: (status, response headers, decoded body). HTTP errors are returned."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", default="http://127.0.0.1:8080", help="where traffic goes")
    parser.add_argument("--feedback", default="http://127.0.0.1:8081", help="the service")
    parser.add_argument("--monitor", default="default/churn", help="NAMESPACE/NAME")
    parser.add_argument("--path", default="/predict", help="the model's path")
    parser.add_argument(
        "--token",
        default=os.environ.get("TRUTHLOOP_TOKEN"),
        help="bearer token for writes, when the service has one (env TRUTHLOOP_TOKEN)",
    )
    args = parser.parse_args(argv)
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    run = uuid.uuid4().hex[:6]
    entity = {key: f"customer-{run}-{key}" for key in CUSTOMERS}

    prediction_ids = {}
    for key, features in CUSTOMERS.items():
        status, headers, answer = call(
            "POST",
            args.sidecar + args.path,
            {"features": features},
            {"X-Entity-ID": entity[key]},
        )
        if status != 200:
            print(f"the model answered {status}: {answer}", file=sys.stderr)
            return 1
        prediction_ids[key] = headers["X-Prediction-ID"]
        served_by = headers.get("X-Served-By", "model")
        print(
            f"{entity[key]}: {json.dumps(answer)}"
            f" (X-Prediction-ID {prediction_ids[key]}, by {served_by})"
        )

    now = datetime.now(UTC).isoformat()
    actuals = [
        # 1. by prediction ID: exactly the answer that carried this ID
        {"monitor": args.monitor, "prediction_id": prediction_ids["a"], "actual": 1},
        # 2. by entity ID: the customer's latest prediction before `timestamp` (default: now)
        {"monitor": args.monitor, "entity_id": entity["b"], "actual": 0, "timestamp": now},
        # 3. a vote: a reviewer marks the prediction wrong, without saying what is right
        {"monitor": args.monitor, "prediction_id": prediction_ids["c"], "vote": "down"},
    ]
    url = args.feedback + "/v1/feedback"
    # One actual per request, or several at once under "items"; either way all or nothing.
    status, _, answer = call("POST", url, actuals[0], auth)
    print(f"POST /v1/feedback by prediction ID → {status} {json.dumps(answer)}")
    status, _, answer = call("POST", url, {"items": actuals[1:]}, auth)
    print(f"POST /v1/feedback entity ID + vote → {status} {json.dumps(answer)}")
    if status != 200:
        return 1

    namespace, name = args.monitor.split("/", 1)
    base = f"{args.feedback}/v1/monitors/{namespace}/{name}"
    deadline = time.monotonic() + 10
    while True:
        timelines = {
            key: call("GET", f"{base}/predictions?{urllib.parse.urlencode({'entity_id': e})}")[2]
            for key, e in entity.items()
        }
        records = {key: t["predictions"] for key, t in timelines.items()}
        if all(r and r[0]["correct"] is not None for r in records.values()):
            break
        if time.monotonic() > deadline:
            print(f"not all labels joined within 10 s: {records}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    for key, rows in records.items():
        row = rows[0]
        print(
            f"{entity[key]}: predicted {row['prediction']}, actual {row['actual']},"
            f" vote {row['vote']}, correct {row['correct']}"
        )
    status, _, metrics = call("GET", f"{base}/metrics")
    accuracy = metrics["metrics"].get("accuracy") or {}
    print(
        f"window: {metrics['labeled']} labeled of {metrics['samples']};"
        f" accuracy {accuracy.get('value')} [{accuracy.get('lower')}, {accuracy.get('upper')}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
