"""Register the factory's search attributes on a cluster (the dev server gets them at start).

Not workflow-safe.
"""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from contracts import search


async def ensure_search_attributes(client: Client) -> list[str]:
    """Add any missing search attribute; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    have = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {k.name: int(k.indexed_value_type) for k in search.ALL if k.name not in have}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
