"""`truthloop demo`: the whole loop on a laptop in under a minute, in time-lapse.

A real model, a real sidecar in front of it and the real feedback service on SQLite, all on
127.0.0.1 in this process (`truthloop.local`); traffic with entity IDs, actuals that arrive late,
and a world that drifts and comes back (`scenario`), watched through the service's APIs (`watch`)
and shown live (`view`), then summed up from the metrics API (`summary`).
"""
