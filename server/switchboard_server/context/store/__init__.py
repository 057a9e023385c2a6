"""Storage backends of the context service behind one interface (``ContextStore``)."""

from switchboard_server.context.store.base import ContextStore, Generations

__all__ = ["ContextStore", "Generations"]
