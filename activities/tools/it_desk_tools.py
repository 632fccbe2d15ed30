"""Old import path of the IT desk declarations, kept for code that imports it.

Workflow-safe. New code imports `activities.tools.it_desk.declarations`.
"""

from activities.tools.it_desk.declarations import *  # noqa: F401,F403
