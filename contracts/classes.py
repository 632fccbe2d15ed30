"""Side-effect classes and data classes of tools, shared by tool declarations and policies.

Workflow-safe.
"""

from enum import StrEnum


class SideEffect(StrEnum):
    """What calling the tool does to the world."""

    READ = "read"
    """Reads only; safe to repeat."""
    WRITE = "write"
    """Changes a system of record; gets an idempotency key."""
    EXTERNAL = "external"
    """Reaches outside the enterprise (mail, payments, third parties); gets an idempotency key."""


class DataClass(StrEnum):
    """Classes of data a tool touches, for policy and audit."""

    PII = "pii"
    FINANCIAL = "financial"
    HEALTH = "health"
    CREDENTIALS = "credentials"
    INTERNAL = "internal"
    PUBLIC = "public"
