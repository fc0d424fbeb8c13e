"""Reads of the telemetry app."""
