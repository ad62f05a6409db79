"""cbs-agent: everything with I/O around the pure protocol core (readers, forecast, outbox,
MQTT publisher, service loop, CLI)."""

__version__ = "1.0.0"
