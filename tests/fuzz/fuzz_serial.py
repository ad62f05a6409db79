"""atheris harness for SerialFrameDecoder (see fuzz_targets.serial_target).

    pip install atheris
    python tests/fuzz/fuzz_serial.py -runs=100000            # bounded run
    python tests/fuzz/fuzz_serial.py -max_total_time=600 corpus/serial   # longer, keeps a corpus

Any libFuzzer flag works; a crash leaves ``crash-<sha1>`` with the input that caused it, which
``python tests/fuzz/fuzz_serial.py crash-<sha1>`` replays.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["protocols", "fuzz_targets"]):
    from fuzz_targets import serial_target


def main() -> None:
    atheris.Setup(sys.argv, serial_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
