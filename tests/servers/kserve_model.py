"""Run by the KServe venv's python: KServe's model server (REST v1 and v2 on one port) serving a
joblib scikit-learn model the way KServe's own sklearn server does, through KServe's helpers
that read v1 `instances`/`inputs` and v2 InferRequests and answer `predictions` / `output-0`."""

import argparse

import joblib
import kserve
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearn(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self._model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        rows = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(rows), self.name)


parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
parser.add_argument("--model_path", required=True)
args, _ = parser.parse_known_args()
server = kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1)
server.start([SKLearn(args.model_name, args.model_path)])
