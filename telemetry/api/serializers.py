"""API serializers of the telemetry app."""
