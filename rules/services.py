"""Writes of the rules app: keyword-only ``<entity>_<action>`` functions."""
