"""Example models, monitors and feedback senders; installed as `truthloop.examples` for the demo."""
