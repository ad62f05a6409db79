"""Errors of the simulators, rooted at the project's :class:`CbsError`.

    CbsError
    +-- SimulatorError            something the simulators cannot do as asked
        +-- FaultSpecError        a bad ``--faults`` / ``--fault-rate`` value (also a ValueError)
        +-- PlanningError         a fault plan whose outcome could not be made deterministic
                                  (a bug in the simulator, never the agent's fault)
"""

from __future__ import annotations

from protocols.errors import CbsError


class SimulatorError(CbsError):
    """Root of the simulators' errors."""


class FaultSpecError(SimulatorError, ValueError):
    """A fault specification names an unknown fault, one the transport cannot have, or a
    rate outside 0-1."""


class PlanningError(SimulatorError, RuntimeError):
    """The simulator could not build a key read whose expected outcome it can vouch for."""
