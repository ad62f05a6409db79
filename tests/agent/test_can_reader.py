"""The CAN reader on python-can's virtual bus: filters, drains, and keeps the frames' timestamps."""

from __future__ import annotations

import can
from spec_example import spec_frames

from agent.readers.can_reader import CanKeyReader
from protocols.can_frame import CanFrame
from protocols.session import SessionAccepted, SessionAssembler


def test_reads_a_session_among_other_traffic() -> None:
    channel = "cbs-test-can-reader"
    reader = CanKeyReader("virtual", channel)
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        assert reader.read(0.01) == [] and reader.connected
        for i, frame in enumerate(spec_frames()):
            sender.send(can.Message(arbitration_id=0x100 + i, data=b"\x00" * 8, is_extended_id=False))
            sender.send(can.Message(arbitration_id=0x18DAF110, data=b"\x01", is_extended_id=True))
            sender.send(can.Message(arbitration_id=frame.arbitration_id, data=frame.data,
                                    is_extended_id=False))
        events: list[CanFrame] = []
        for _ in range(50):
            events += [e for e in reader.read(0.05) if isinstance(e, CanFrame)]
            if len(events) >= 12:
                break
        assert [e.arbitration_id for e in events] == [f.arbitration_id for f in spec_frames()]
        assert all(e.timestamp > 0 for e in events)
        assembler = SessionAssembler()
        accepted = [ev for e in events for ev in assembler.feed(e) if isinstance(ev, SessionAccepted)]
        assert len(accepted) == 1 and accepted[0].session.vin == "WBA8E5107FK123456"
    finally:
        reader.close()
        sender.shutdown()


def test_unknown_interface_is_retried_not_raised() -> None:
    reader = CanKeyReader("no-such-interface", "x", backoff_min_s=0.01)
    assert reader.read(0.01) == []
    assert not reader.connected
