"""The vehicle test's timing (shared/spec/diagnostics.md, "Timing"), apart from the transport
so that loading the configuration does not import python-can."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DiagnosticTiming:
    """The spec's timing (shared/spec/diagnostics.md, "Timing"); every figure configurable."""

    p2_s: float = 0.150
    p2_star_s: float = 5.0
    max_pending: int = 10
    n_bs_s: float = 1.0
    n_cr_s: float = 1.0
    busy_retry_s: float = 0.020
    busy_retries: int = 3
    max_wait_frames: int = 10
    max_in_flight: int = 8
    #: Probes (``3E 00``, a single frame each) on the bus at once; None: every address. The
    #: in-flight bound above governs the requests after the probe (docs/diagnostics.md,
    #: "Readings of the spec").
    probes_in_flight: int | None = None

    def probe_batch(self, addresses: int) -> int:
        """How many of ``addresses`` probes go out together."""
        return max(1, addresses if self.probes_in_flight is None
                   else min(self.probes_in_flight, addresses))
