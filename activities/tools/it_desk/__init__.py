"""The IT service desk tool family: a directory lookup (read) and ticket creation (write).

Not workflow-safe as a package (its activities do SQL I/O); `declarations` is.
"""

from __future__ import annotations

from activities.tools.families import ToolFamily
from activities.tools.it_desk import declarations
from activities.tools.it_desk.activities import DirectoryPerson, ItDeskActivities, Ticket, seed_directory

FAMILY = ToolFamily(
    name=declarations.NAME,
    declarations=declarations,
    activities=lambda db_url: ItDeskActivities(db_url).activities(),
    tables=(DirectoryPerson, Ticket),
    seed=seed_directory,
)
