"""Declarations of the IT service desk tools used by the reference agent.

Workflow-safe: models and metadata only; the implementations are in
`activities.tools.it_desk.activities`. These tools shipped before activity names
were namespaced by family, so each keeps its bare activity name (recorded
histories schedule `lookup_requester` and `create_ticket`).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.catalog import declare
from contracts.tools import DataClass, SideEffect, ToolMeta


NAME = "it_desk"
"""The family name: the middle of a namespaced activity name (`tool.it_desk.<tool>`)."""

#: Spelled without `\s` and `\.`, which llama.cpp's grammar converter rejects.
EMAIL_PATTERN = r"^[^@ \t\r\n]+@[^@ \t\r\n]+[.][^@ \t\r\n]+$"


class Category(StrEnum):
    ACCESS = "access"
    HARDWARE = "hardware"
    SOFTWARE = "software"
    NETWORK = "network"
    EMAIL = "email"
    SECURITY = "security"
    OTHER = "other"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class LookupRequesterArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(pattern=EMAIL_PATTERN, description="Requester's email address.")


class RequesterRecord(BaseModel):
    found: bool
    email: str
    name: str | None = None
    department: str | None = None
    location: str | None = None
    vip: bool = False


class CreateTicketArgs(BaseModel):
    # The summary comes before the category and priority: a model that writes its arguments in
    # schema order then states the problem before it classifies it.
    model_config = ConfigDict(extra="forbid")
    requester_email: str = Field(pattern=EMAIL_PATTERN, description="Requester's email address.")
    summary: str = Field(min_length=5, max_length=200, description="One-line summary of the problem.")
    category: Category = Field(description="Ticket category.")
    priority: Priority = Field(description="P1 (outage, many users) to P4 (request, no urgency).")


class TicketRecord(BaseModel):
    ticket_id: str
    status: str
    created: bool
    """False when an earlier call with the same idempotency key already created it."""


LOOKUP_REQUESTER = declare(
    ToolMeta(
        name="lookup_requester",
        description="Look up the person who raised the ticket in the employee directory.",
        side_effect=SideEffect.READ,
        data_classes=(DataClass.PII,),
        start_to_close=timedelta(seconds=10),
    ),
    LookupRequesterArgs,
    RequesterRecord,
    family=NAME,
    legacy_activity_name="lookup_requester",
)

CREATE_TICKET = declare(
    ToolMeta(
        name="create_ticket",
        description="Open a ticket in the service desk queue. Call once per request.",
        side_effect=SideEffect.WRITE,
        data_classes=(DataClass.PII, DataClass.INTERNAL),
        start_to_close=timedelta(seconds=15),
    ),
    CreateTicketArgs,
    TicketRecord,
    family=NAME,
    legacy_activity_name="create_ticket",
)
