"""Old import path of the IT desk activities, tables and seed data, kept for code that imports it.

Not workflow-safe. New code imports `activities.tools.it_desk` (its `FAMILY`) or
`activities.tools.it_desk.activities`.
"""

from activities.tools.it_desk.activities import (  # noqa: F401
    DirectoryPerson,
    ItDeskActivities,
    Ticket,
    seed_directory,
)
