"""The vehicle test over the OBD socket (shared/spec/diagnostics.md, docs/diagnostics.md)."""
