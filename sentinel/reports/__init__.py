"""Compliance reports for auditors: HTML, PDF, XLSX, CSV, JSON and OSCAL, with an integrity manifest."""
