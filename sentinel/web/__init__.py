"""The built-in situational-awareness web view and JSON API."""
