"""A deployment's bound on one activity attempt (`temporal.activity_attempt_seconds`).

The workflows give each activity a start-to-close timeout of their own (60 s for Bitrix24, 90 s
for a cold 1C). That timeout is also how long a worker killed mid-activity leaves the attempt
orphaned before Temporal retries it elsewhere, so a deployment that restarts workers often —
or a test that kills them on purpose — may want it shorter. This worker interceptor lowers the
timeout of every activity the workflows schedule to the configured bound; it never raises one.

Safe for replay: a start-to-close timeout is not part of what Temporal checks when it replays
a history (only the command's kind, activity type and ID are), so workers with different bounds
replay each other's histories.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


class AttemptTimeouts(Interceptor):
    """Caps each activity attempt's start-to-close timeout at `bound`."""

    def __init__(self, bound: timedelta) -> None:
        self.bound = bound

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        bound = self.bound

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, bound))

        return Inbound


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, bound: timedelta) -> None:
        super().__init__(next)
        self._bound = bound

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle:
        if input.start_to_close_timeout is None or input.start_to_close_timeout > self._bound:
            input.start_to_close_timeout = self._bound
        return super().start_activity(input)
