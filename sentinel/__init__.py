"""Sentinel: network-security situational-awareness monitor for registered systems."""

__version__ = "0.1.0"
