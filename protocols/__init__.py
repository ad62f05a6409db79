"""Pure wire logic of the key reader: serial framing, session assembly and DBC-driven decoding.

Nothing here opens ports, sockets or files, reads a clock or configures logging: callers feed
bytes or frames together with their timestamps and receive events back.
"""
