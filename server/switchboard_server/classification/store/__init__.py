"""Durable storage of the classification service: the run-time training examples."""

from switchboard_server.classification.store.examples import ExampleStore

__all__ = ["ExampleStore"]
