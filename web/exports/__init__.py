"""Streaming report exports (CSV and XLSX) under /api/v1/exports."""
