"""What a monitored model predicts: the task decides which labels are valid and which metrics exist.

Its own module so that both the metrics (which it keys) and the spec (which reads it) depend on it
one way.
"""

from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
