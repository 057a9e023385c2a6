"""A tracer provider whose recorded child spans skip the SDK span's bookkeeping.

Every Chat records 11 spans in the apps, each started with a handful of fixed
attributes (the RPC's method, peer, ...) and ended a few milliseconds later on the
same event loop. The SDK's span validates each start attribute into a
``BoundedAttributes`` under a lock, keeps bounded lists for events and links, takes its
lock again at the end and hands the processor a ``ReadableSpan`` copy of itself: about
half of what a recorded span costs here (~30 of ~60 µs in a hot loop, 2-3 times that
inside the running apps).

:class:`LeanSpan` is a ``ReadableSpan`` that is also the live span: its start
attributes are a plain copy of the given mapping (callers pass fixed, well-typed
values), it records what is added later the SDK's way (attributes and events validated
by ``BoundedAttributes``, exceptions as the SDK's ``exception`` event, the same status
rules), and once ended it changes no more and is itself what the span processors get.

:class:`LeanTracerProvider` is the SDK provider (sampler, ids, resource, processors,
shutdown) whose tracers start a ``LeanSpan`` for a child of a valid parent with no links
and no explicit start time: what our interceptors and domain spans start. Anything
else (a root span, links, a start time) is the SDK tracer's own span. Not carried over:
the SDK's internal span metrics (off unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``),
span limits on start attributes (the defaults, 128 attributes of any length, are far
above our ≤ 8), per-tracer configurators (this provider sets none) and the processors'
``on_start``/``_on_ending`` hooks (the SDK's batch and simple processors do nothing
there). Tests compare exported lean spans field by field with the SDK's.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

log = logging.getLogger(__name__)

_INTERNAL = trace.SpanKind.INTERNAL
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_UNSAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span that is its own ``ReadableSpan`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        context: trace.SpanContext,
        parent: trace.SpanContext,
        kind: trace.SpanKind,
        attributes: Mapping[str, AttributeValue],
        tracer: LeanTracer,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        sdk = tracer.sdk
        # the live span's own: ReadableSpan exposes them read-only once handed over
        self._live_attributes: dict[str, AttributeValue] = dict(attributes)
        self._live_events: list[Event] = []
        self._span_context = context
        ReadableSpan.__init__(
            self,
            name=name,
            context=context,
            parent=parent,
            resource=sdk.resource,
            attributes=self._live_attributes,
            events=self._live_events,
            kind=kind,
            instrumentation_info=sdk.instrumentation_info,
            status=_UNSET,
            start_time=time_ns(),
            instrumentation_scope=tracer.scope,
        )
        self._processor: SpanProcessor = sdk.span_processor
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    def get_span_context(self) -> trace.SpanContext:
        return self._span_context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self) -> bool:
        if self._end_time is None:
            return False
        log.warning("Span %r is ended; the change is ignored.", self._name)
        return True

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if not self._ended():
            self._live_attributes.update(BoundedAttributes(attributes=attributes))

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.set_attributes({key: value})

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if not self._ended():
            event = Event(name, BoundedAttributes(attributes=attributes, immutable=True), timestamp)
            self._live_events.append(event)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """The SDK's ``exception`` event: type, message, stack trace, escaped."""
        module, qualname = type(exception).__module__, type(exception).__qualname__
        event_attributes: dict[str, AttributeValue] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        event_attributes.update(attributes or {})
        self.add_event("exception", event_attributes, timestamp)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is ignored."""
        if self._ended() or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def update_name(self, name: str) -> None:
        if not self._ended():
            self._name = name

    def end(self, end_time: int | None = None) -> None:
        if self._ended():
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._processor.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """As the SDK span used as a context manager."""
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class LeanTracer(trace.Tracer):
    """An SDK tracer that starts a :class:`LeanSpan` where it can."""

    def __init__(self, sdk: SdkTracer, scope: InstrumentationScope) -> None:
        self.sdk, self.scope = sdk, scope

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: trace.SpanKind = _INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if links or start_time is not None or not parent.is_valid:
            return self.sdk.start_span(
                name,
                context=context,
                kind=kind,
                attributes=attributes,
                links=links,
                start_time=start_time,
                record_exception=record_exception,
                set_status_on_exception=set_status_on_exception,
            )
        sdk = self.sdk
        sampled = sdk.sampler.should_sample(context, parent.trace_id, name, kind, attributes, ())
        decision = sampled.decision
        flags = _SAMPLED if decision is Decision.RECORD_AND_SAMPLE else _UNSAMPLED
        if parent.trace_flags.random_trace_id:
            flags = trace.TraceFlags(flags | trace.TraceFlags.RANDOM_TRACE_ID)
        span_context = trace.SpanContext(
            parent.trace_id,
            sdk.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=sampled.trace_state,
        )
        if decision is Decision.DROP:
            return trace.NonRecordingSpan(span_context)
        return LeanSpan(
            name,
            span_context,
            parent,
            kind,
            sampled.attributes or {},
            self,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager  # the API's type is a private decorator's; this one behaves the same
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: trace.SpanKind = _INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name,
            context=context,
            kind=kind,
            attributes=attributes,
            links=links,
            start_time=start_time,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class LeanTracerProvider(TracerProvider):
    """The SDK's provider; its tracers start :class:`LeanSpan` children."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean: dict[SdkTracer, LeanTracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> trace.Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if not isinstance(tracer, SdkTracer):  # a disabled provider's no-op tracer
            return tracer
        lean = self._lean.get(tracer)
        if lean is None:
            scope = InstrumentationScope(  # as the SDK makes its tracer's
                instrumenting_module_name or "",
                instrumenting_library_version or "",
                schema_url,
                attributes,
            )
            lean = self._lean[tracer] = LeanTracer(tracer, scope)
        return lean
