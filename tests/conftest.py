"""Suite-wide fixtures: private mosquitto brokers and subscribers (see tests/broker.py)."""

from __future__ import annotations

import os

from broker import make_broker, make_subscriber, mosquitto  # noqa: F401  (fixtures)
from hypothesis import settings

settings.register_profile("ci", deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
