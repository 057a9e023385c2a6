"""Durable storage of the orchestration service: the conversation log (SQLite in the
service's data directory; or Redis, shared by several replicas, in ``redis_log``, which
needs the ``redis`` extra and is imported only when chosen)."""

from typing import Protocol

from switchboard_server.orchestration.ports import ConversationLog
from switchboard_server.orchestration.store.conversation_log import SqliteConversationLog


class LogStore(ConversationLog, Protocol):
    """A conversation log the module opens and closes."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


__all__ = ["LogStore", "SqliteConversationLog"]
