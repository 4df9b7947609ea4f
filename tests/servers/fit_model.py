"""Run by a server venv's python: fit a LogisticRegression on synthetic rows and save it with
joblib at argv[1], so the server that loads it has the scikit-learn that pickled it."""

import sys

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

FEATURES = 4
ROWS = 300

rng = np.random.default_rng(7)
x = rng.normal(size=(ROWS, FEATURES))
y = (x @ np.array([1.5, -2.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=ROWS) > 0).astype(int)
joblib.dump(LogisticRegression().fit(x, y), sys.argv[1])
