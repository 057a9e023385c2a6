"""The orchestration service."""
