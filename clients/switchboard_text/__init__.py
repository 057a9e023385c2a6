"""Text handling that the client (``switchboard kb``) and the context service share.

Standard library only: it ships in every install (the client-only one has neither the
server extra nor the generated stubs' wire concerns), and the server imports it without
importing ``switchboard_client``.
"""

from switchboard_text.passages import split_passages

__all__ = ["split_passages"]
