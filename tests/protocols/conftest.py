"""Hypothesis settings of the protocol tests.

The profile is registered here, not loaded: loading would change ``settings.default`` for every
test collected after this file, including other packages' tests. The modules of this directory
decorate their properties with ``@settings(PROTOCOLS, max_examples=examples(n))`` instead.

Longer local runs: ``CBS_HYPOTHESIS_SCALE=50 python -m pytest tests/protocols tests/fuzz``
multiplies every ``max_examples`` (see ``strategies.examples``).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cbs-protocols",
    # The properties encode through cantools and run for a bounded number of examples; CI
    # machines vary in speed, so no per-example deadline (a slow example is not a bug here).
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
