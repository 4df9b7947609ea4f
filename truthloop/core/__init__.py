"""The pure core: spec parsing, value extraction, metric math, rules and the alert machine.

Nothing here does I/O or reads a clock; time is always a parameter. The sidecar, the feedback
service and the operator are thin shells of I/O around these functions.
"""
