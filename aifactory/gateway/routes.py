"""The gateway's endpoints: parameters in, `runs` does the work, a body out.

Not workflow-safe. The factory is the app's (`request.app.state.factory`); the
caller is authenticated before a route runs (`auth`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from aifactory.client import FactoryClient
from aifactory.gateway import runs
from aifactory.gateway.auth import current_caller
from aifactory.gateway.bodies import Decide, Decision, ErrorBody, Health, PendingDecisions, RunStarted, RunView, StartRun
from aifactory.gateway.callers import Caller

CallerDep = Annotated[Caller, Depends(current_caller)]
RunIdPath = Annotated[str, Path(description="The run id, slashes and all: `agent/<agent>/<tenant>/<run key>`", examples=["agent/it-triage/acme/T-1001"])]


def _errors(*codes: int) -> dict[int | str, dict]:
    words = {
        400: "The request does not fit (each problem names the field), or the agent's input schema refused the input",
        401: "No bearer token, or one this gateway does not accept",
        403: "The caller's key or token does not cover this tenant or agent, or cannot decide",
        404: "No such run or agent",
        409: "Refused by the factory: a kill switch, a spent cost envelope, an agent that fails the admission gate, or a decision the run refused",
        503: "Temporal or the identity provider did not answer",
    }  # fmt: skip
    return {code: {"model": ErrorBody, "description": words[code]} for code in codes}


def factory_of(request: Request) -> FactoryClient:
    return request.app.state.factory


FactoryDep = Annotated[FactoryClient, Depends(factory_of)]
router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["gateway"], summary="The gateway answers")
async def healthz() -> Health:
    return Health()


@router.post(
    "/v1/agents/{agent}/runs", response_model=RunStarted, status_code=status.HTTP_201_CREATED, tags=["runs"],
    summary="Start a run (idempotent on its run key)", response_description="A new run started", responses={200: {"model": RunStarted, "description": "The run with this business key already existed: nothing new started"}, **_errors(400, 401, 403, 404, 409, 503)},
)  # fmt: skip
async def start_run(
    agent: Annotated[str, Path(description="The agent to run", examples=["it-triage"])],
    body: StartRun, response: Response, caller: CallerDep, factory: FactoryDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", description="The run key, when the body has none")] = None,
) -> RunStarted:  # fmt: skip
    started = await runs.start(factory, caller, agent, body, idempotency_key)
    if started.started:
        response.headers["Location"] = started.links.run
    else:
        response.status_code = status.HTTP_200_OK
    return started


@router.get(
    "/v1/runs/{run_id:path}", response_model=RunView, tags=["runs"],
    summary="Read a run: where it is, its result, or its typed failure", responses=_errors(400, 401, 403, 404, 503),
)  # fmt: skip
async def read_run(run_id: RunIdPath, caller: CallerDep, factory: FactoryDep) -> RunView:
    run = runs.RunId.parse(run_id)
    runs.in_scope(caller, run.agent, run.tenant)
    return await runs.read(factory, run)


@router.get(
    "/v1/approvals", response_model=PendingDecisions, tags=["approvals"],
    summary="Runs waiting for a person, in the caller's scope", responses=_errors(400, 401, 403, 404, 503),
)  # fmt: skip
async def list_approvals(
    caller: CallerDep, factory: FactoryDep,
    group: Annotated[str | None, Query(description="Only requests asking this approver group", examples=["it-desk-leads"])] = None,
    tenant: Annotated[str | None, Query(description="Only runs of this tenant (which the caller must cover)")] = None,
    agent: Annotated[str | None, Query(description="Only runs of this agent (which the caller must cover)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many runs")] = 100,
) -> PendingDecisions:  # fmt: skip
    return await runs.pending(factory, caller, group=group, tenant=tenant, agent=agent, limit=limit)


@router.post(
    "/v1/runs/{run_id:path}/decisions", response_model=Decision, tags=["approvals"],
    summary="Approve or reject what a run waits for, as the caller's person", responses=_errors(400, 401, 403, 404, 409, 503),
)  # fmt: skip
async def decide(run_id: RunIdPath, body: Decide, caller: CallerDep, factory: FactoryDep) -> Decision:
    return await runs.decide(factory, caller, runs.RunId.parse(run_id), body)
