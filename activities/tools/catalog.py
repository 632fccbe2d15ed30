"""The tool catalog with every installed tool family declared in it.

Not workflow-safe (it loads the families, which reads package metadata). The
catalog itself is `contracts.catalog`, which workflows import; this module is
for the activity and worker layers (model calls, the release gate, metrics),
which want it filled: importing it loads the built-in and installed families
(`activities.tools.families`).
"""

from contracts.catalog import CATALOG, ArgumentsRejected, ToolDefinition, declare, get_tool, tool_for_activity  # noqa: F401
from activities.tools.families import installed_families

installed_families()
