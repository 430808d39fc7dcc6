"""The workflow sandbox used by every worker.

The default sandbox wraps `zoneinfo.ZoneInfo` in a proxy that `datetime` refuses as tzinfo;
the calendar rules need real zones, so that one restriction (which only guards cache and file
loading) is lifted; and the plain data modules are passed through (below).
"""

from __future__ import annotations

import dataclasses

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Plain data and pure functions the workflow code imports, passed through the sandbox: imported
# once per process instead of once per workflow run (Temporal's documented way, "Passthrough
# modules"; pydantic itself is passed through by default). Re-importing the models built every
# pydantic class of them again for each new deal: `python -X importtime` 0.3–0.6 s of CPU of
# the ~2 s the workflow modules take — the bulk of a deal's first workflow task (issue 16).
# None of them keeps state between calls or reads the clock, the environment or files.
SANDBOX_PASSTHROUGH = (
    "salesflow.workflows.models",
    "salesflow.workflows.onec_models",
    "salesflow.workflows.rules",
    "salesflow.workflows.names",
    "salesflow.config.templates",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    default = SandboxRestrictions.default
    members = default.invalid_module_members
    children = {k: v for k, v in members.children.items() if k != "zoneinfo"}
    restrictions = dataclasses.replace(
        default.with_passthrough_modules("zoneinfo", *SANDBOX_PASSTHROUGH),
        invalid_module_members=dataclasses.replace(members, children=children),
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)
