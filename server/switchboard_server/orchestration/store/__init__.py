"""Durable storage of the orchestration service: the conversation log."""

from switchboard_server.orchestration.store.conversation_log import SqliteConversationLog

__all__ = ["SqliteConversationLog"]
