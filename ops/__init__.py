"""Operate a deployed stack over SSM: verify, pause/resume Beat, deploy and roll back releases
(docs/operations.md). Entry point: `python -m ops --help`."""
