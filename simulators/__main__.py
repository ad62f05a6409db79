"""``python -m simulators`` is ``cbs-sim``."""

from __future__ import annotations

import sys

from simulators.cli import main

sys.exit(main())
