"""The knowledge-base tools of ``switchboard kb``: reading files, finding the service."""
