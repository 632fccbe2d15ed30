"""Register the factory's search attributes on a cluster (the dev server gets them at start).

Not workflow-safe. Works against servers without the list call (the
time-skipping test server) by adding what is missing and ignoring "exists".
"""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contracts import search


async def ensure_search_attributes(client: Client) -> list[str]:
    """Add any missing search attribute; returns the names added."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        have = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as e:
        if e.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        have = set()
    missing = {k.name: int(k.indexed_value_type) for k in search.ALL if k.name not in have}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    except RPCError as e:
        if e.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
    return sorted(missing)
