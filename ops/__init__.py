"""The operators' and auditors' tool: `python -m ops ...`."""
