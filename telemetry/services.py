"""Writes of the telemetry app: keyword-only ``<entity>_<action>`` functions."""
