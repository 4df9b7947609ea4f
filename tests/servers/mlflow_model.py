"""Run by the MLflow venv's python: fit a LogisticRegression on a data frame of 4 named columns
and save it as an MLflow model at argv[1], its signature naming those columns (so the scoring
server takes data frames by column name). cloudpickle: MLflow 3's default, skops, is not
installed with mlflow-skinny."""

import sys

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

COLUMNS = ["tenure", "charges", "calls", "age"]

rng = np.random.default_rng(7)
x = pd.DataFrame(rng.normal(size=(300, len(COLUMNS))), columns=COLUMNS)
y = x.to_numpy() @ np.array([1.5, -2.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=300) > 0
model = LogisticRegression().fit(x, y.astype(int))
mlflow.sklearn.save_model(
    model,
    sys.argv[1],
    signature=infer_signature(x, model.predict(x)),
    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
)
