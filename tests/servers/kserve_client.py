"""Run by the KServe venv's python: KServe's own REST client (InferenceRESTClient) sends each call
on stdin to a base URL and prints, as JSON, what it made of each answer: v1 the body it decoded,
v2 the InferResponse it parsed, its outputs as numpy arrays; with the answer's headers.

stdin: {"base": url, "model": name, "calls": [{"protocol": "v1"|"v2", "rows": [[...]],
"headers": {...}, "id": request id (v2), "binary": the tensor in the binary data extension
(v2; the client's default, here off unless asked)}]}."""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def call(base, model, spec):
    client = InferenceRESTClient(RESTConfig(protocol=spec["protocol"], retries=0, timeout=30))
    headers = {}
    if spec["protocol"] == "v1":
        data = {"instances": spec["rows"]}
    else:
        rows = spec["rows"]
        tensor = InferInput("input-0", [len(rows), len(rows[0])], "FP64")
        binary = spec.get("binary", False)
        tensor.set_data_from_numpy(np.array(rows, dtype=np.float64), binary_data=binary)
        data = InferRequest(model_name=model, infer_inputs=[tensor], request_id=spec["id"])
    answer = await client.infer(
        base, data, model_name=model, headers=spec["headers"], response_headers=headers
    )
    if spec["protocol"] == "v2":
        answer = {
            "model_name": answer.model_name,
            "id": answer.id,
            "outputs": {o.name: o.as_numpy().tolist() for o in answer.outputs},
        }
    return {"body": answer, "headers": {k.lower(): v for k, v in headers.items()}}


async def main(order):
    return [await call(order["base"], order["model"], spec) for spec in order["calls"]]


print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
