"""Run by the MLflow venv's python: MLflow's own scoring-server client (ScoringServerClient, what
MLflow's tests and `mlflow models predict` use) sends the data frame on stdin to a host and port,
and prints the predictions it read from the answer (PredictionsResponse.get_predictions).

stdin: {"host": ..., "port": ..., "rows": [{column: value, ...}, ...]}."""

import json
import sys

import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

order = json.load(sys.stdin)
client = ScoringServerClient(order["host"], order["port"])
response = client.invoke(pd.DataFrame(order["rows"]))
print(json.dumps(response.get_predictions(predictions_format="ndarray").tolist()))
