"""Builders, servers and data shared by several test modules. Nothing here is collected as a test."""
