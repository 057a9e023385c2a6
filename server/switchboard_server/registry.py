"""Which ServiceModule runs for each service name (imports are deferred to the one used)."""

from __future__ import annotations

from switchboard_server.config import ServiceName
from switchboard_server.service import Runtime, ServiceModule


def build_service(runtime: Runtime) -> ServiceModule:
    """Build the ServiceModule for ``runtime.service``."""
    if runtime.service is ServiceName.CLASSIFICATION:
        from switchboard_server.classification.module import ClassificationModule

        return ClassificationModule(runtime)
    if runtime.service is ServiceName.CONTEXT:
        from switchboard_server.context.module import ContextModule

        return ContextModule(runtime)
    from switchboard_server.orchestration.module import OrchestrationModule

    return OrchestrationModule(runtime)
