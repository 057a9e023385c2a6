"""Sub-commands of the `switchboard` CLI that talk to a running mesh."""
