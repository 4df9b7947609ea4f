"""Settings for the whole suite.

Hypothesis' per-example deadline (200 ms) and its too-slow check on data generation are timing
assertions: on a shared 2-core machine under load they fail tests whose code is right (seen on
`test_protocols.py`'s v2 reshape property). The suite asserts no time, so neither applies.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("truthloop", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("truthloop")
