"""The loop on one machine: a feedback service and a sidecar on 127.0.0.1, in one process.

`truthloop run` puts them in front of a model the user runs; `truthloop demo` adds its own model,
traffic and a world that drifts. Both talk to the parts only through their network interfaces.
"""
