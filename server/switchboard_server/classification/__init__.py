"""The classification service."""
