"""Run by the MLServer venv's python: MLServer's own gRPC stubs and converters send each batch on
stdin as an Open Inference Protocol ModelInfer call, all on one channel (one HTTP/2 connection),
to a target, and print the `predict` output of each answer as MLServer's NumpyCodec decodes it.

stdin: {"target": "host:port", "model": name, "batches": [[[...], ...], ...]}."""

import json
import sys

import grpc
from mlserver.codecs import NumpyCodec
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceStub
from mlserver.types import InferenceRequest, RequestInput


def request(rows):
    tensor = RequestInput(
        name="predict",
        shape=[len(rows), len(rows[0])],
        datatype="FP64",
        data=[v for row in rows for v in row],
    )
    return InferenceRequest(inputs=[tensor])


order = json.load(sys.stdin)
answers = []
with grpc.insecure_channel(order["target"]) as channel:
    stub = GRPCInferenceServiceStub(channel)
    for rows in order["batches"]:
        call = ModelInferRequestConverter.from_types(request(rows), model_name=order["model"])
        response = ModelInferResponseConverter.to_types(stub.ModelInfer(call, timeout=30))
        [predict] = [o for o in response.outputs if o.name == "predict"]
        answers.append(NumpyCodec.decode_output(predict).reshape(-1).tolist())
print(json.dumps(answers))
