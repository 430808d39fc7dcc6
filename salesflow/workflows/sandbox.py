"""The workflow sandbox used by every worker.

The default sandbox wraps `zoneinfo.ZoneInfo` in a proxy that `datetime` refuses as tzinfo;
the calendar rules need real zones, so that one restriction (which only guards cache and file
loading) is lifted.
"""

from __future__ import annotations

import dataclasses

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner() -> SandboxedWorkflowRunner:
    default = SandboxRestrictions.default
    members = default.invalid_module_members
    children = {k: v for k, v in members.children.items() if k != "zoneinfo"}
    restrictions = dataclasses.replace(
        default.with_passthrough_modules("zoneinfo"),
        invalid_module_members=dataclasses.replace(members, children=children),
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)
