"""truthloop: a Kubernetes-native feedback loop for ML models."""

__version__ = "0.1.0"
