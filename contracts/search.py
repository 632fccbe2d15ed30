"""Search attributes that make runs filterable in the Temporal UI.

Workflow-safe. Registered on the dev server by `aifactory dev` and on a cluster
by `aifactory setup`; names are wire API.
"""

from temporalio.common import SearchAttributeKey

AGENT_NAME = SearchAttributeKey.for_keyword("AgentName")
AGENT_VERSION = SearchAttributeKey.for_keyword("AgentVersion")
AGENT_OWNER = SearchAttributeKey.for_keyword("AgentOwner")
TENANT = SearchAttributeKey.for_keyword("Tenant")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AwaitingApproval")
APPROVAL_GROUP = SearchAttributeKey.for_keyword("ApprovalGroup")
AWAITING_OPERATOR = SearchAttributeKey.for_bool("AwaitingOperator")
"""A write or external tool ran out of retries and the run waits for an operator (`aifactory tool`)."""

ALL = (AGENT_NAME, AGENT_VERSION, AGENT_OWNER, TENANT, AWAITING_APPROVAL, APPROVAL_GROUP, AWAITING_OPERATOR)
