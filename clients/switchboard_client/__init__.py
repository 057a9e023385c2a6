"""Typed clients and the `switchboard` command line for the Switchboard mesh."""
