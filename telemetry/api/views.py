"""API views of the telemetry app."""
