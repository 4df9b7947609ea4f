"""Run by the MLServer venv's python: each JSON answer on stdin (a list of them) parsed with
MLServer's own `InferenceResponse` and its outputs decoded with MLServer's codecs (numbers and
booleans by NumpyCodec, BYTES by StringCodec), printed as JSON: what an MLServer client makes of
an answer, the sidecar's fallback answer included."""

import json
import sys

from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceResponse


def decoded(body):
    response = InferenceResponse.model_validate(body)
    outputs = {}
    for output in response.outputs:
        codec = StringCodec if output.datatype == "BYTES" else NumpyCodec
        value = codec.decode_output(output)
        outputs[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": value if isinstance(value, list) else value.tolist(),
        }
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    }


print(json.dumps([decoded(body) for body in json.load(sys.stdin)]))
