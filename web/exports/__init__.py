"""Streaming report exports (CSV and XLSX) under /api/v1/exports: the endpoint
(``streaming``), the reports (``reports``), their parameters (``params``), and the two file
formats (``csv_format``, ``xlsx``)."""
