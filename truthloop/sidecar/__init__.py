"""The capture sidecar: a lean reverse proxy in the model pod that records every prediction."""
