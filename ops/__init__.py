"""Operate a deployed stack over SSM: verify, pause/resume Beat, deploy and roll back releases
(README: "Deploying and rolling back"). Entry point: `python -m ops --help`."""
