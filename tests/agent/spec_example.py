"""The protocol spec's worked example (section 4), as frames and as the capture files a support
engineer would send: shared by the agent's tests."""

from __future__ import annotations

from pathlib import Path

from protocols.can_frame import CanFrame
from protocols.serial_framing import FrameType, encode_can_frame, encode_frame

SPEC_FRAMES = [
    (0x6F0, "01 07 0A 78 56 34 12 02"),
    (0x6F1, "00 57 42 41 38 45 35 31"),
    (0x6F1, "01 30 37 46 4B 31 32 33"),
    (0x6F1, "02 34 35 36 00 00 00 00"),
    (0x6F2, "F3 BC 00 9A CD 3F 96 01"),
    (0x6F3, "7C 42 9A 88 C5 08 E0 08"),
    (0x6F4, "00 01 0C 08 07 B0 11 02"),
    (0x6F4, "01 03 FF 00 00 B8 99 00"),
    (0x6F5, "00 30 75 00 99 B5 04 03"),
    (0x6F6, "00 02 01 01 8A BB 00 00"),
    (0x6F7, "00 03 01 1F 2F 12 03 00"),
    (0x6FF, "07 0A 9F 2A B0 2C 00 00"),
]
# 2026-11-27T09:15:02.123Z, the contract's example read time, for the END frame.
END_EPOCH_S = 1795770902.123


def spec_frames(end_at: float = END_EPOCH_S, gap_s: float = 0.001) -> list[CanFrame]:
    start = end_at - gap_s * (len(SPEC_FRAMES) - 1)
    return [CanFrame(fid, bytes.fromhex(data), start + i * gap_s)
            for i, (fid, data) in enumerate(SPEC_FRAMES)]


def write_candump(path: Path, frames: list[CanFrame]) -> Path:
    path.write_text("".join(f"({f.timestamp:.6f}) can0 {f.arbitration_id:03X}#{f.data.hex().upper()}\n"
                            for f in frames))
    return path


def serial_bytes(frames: list[CanFrame], *, key_removed: bool = True) -> bytes:
    out = encode_frame(FrameType.KEY_PRESENT) + b"".join(encode_can_frame(f) for f in frames)
    return out + (encode_frame(FrameType.KEY_REMOVED) if key_removed else b"")
