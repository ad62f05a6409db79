"""atheris harness for SessionAssembler (see fuzz_targets.session_target).

    pip install atheris
    python tests/fuzz/fuzz_session.py -runs=100000            # bounded run
    python tests/fuzz/fuzz_session.py -max_total_time=600 corpus/session   # longer, keeps a corpus

Any libFuzzer flag works; a crash leaves ``crash-<sha1>`` with the input that caused it, which
``python tests/fuzz/fuzz_session.py crash-<sha1>`` replays.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["protocols", "dbc", "fuzz_targets"]):
    from fuzz_targets import session_target


def main() -> None:
    atheris.Setup(sys.argv, session_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
