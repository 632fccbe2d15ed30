"""The `call_model` activity: one chat completion through the `openai` client.

Not workflow-safe. The client has `max_retries=0` (Temporal retries, so every
attempt is in history); keys come from the worker's environment through
`EndpointRegistry` and never appear in inputs, results or errors.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.admission import Admissions
from activities.budget import BudgetLedger
from activities.model.endpoints import Endpoint, EndpointNotConfigured, EndpointRegistry
from activities.model.errors import to_application_error, will_retry
from activities.model.parser import parse_text_tool_calls
from activities.model.request import request_body
from activities.model.pricing import Pricing
from activities.model.transcripts import TranscriptGap, TranscriptStore
from activities.releases.registry import ReleaseRegistry
from contracts.errors import MODEL_CALL_REJECTED, MODEL_RESPONSE_INVALID, MODEL_RESPONSE_TOO_LARGE, RELEASE_UNAVAILABLE, TRANSCRIPT_MISSING
from contracts.budget import BudgetNote, EnvelopeRef
from contracts.control import Admitted
from contracts.model import ChatMessage, ModelCallInput, ModelCallResult, ToolCall, Usage, system_prompt
from contracts.wire import Activity


#: How often a model call that is still waiting heartbeats (workers send heartbeats this often too).
HEARTBEAT_EVERY = 5.0


async def _heartbeating(call: Any) -> Any:
    """Await `call`, heartbeating while it takes longer than `HEARTBEAT_EVERY`, so that a kill
    switch's cancellation reaches a slow call (a fast one sends no heartbeat at all)."""
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        task.cancel()


def _reply(resp: ChatCompletion, inp: ModelCallInput, forced_as_json: Any, tools: list) -> tuple[Any, ChatMessage, bool]:
    """The endpoint's answer as the workflow's message: tool calls from `tool_calls`, from a forced
    JSON answer, or parsed from the text (small open models write them there)."""
    if not resp.choices:
        raise ApplicationError("endpoint answered without choices", type=MODEL_RESPONSE_INVALID)
    choice = resp.choices[0]
    calls = [
        ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
        for c in (choice.message.tool_calls or [])
        if getattr(c, "function", None) is not None
    ]
    from_text = False
    if forced_as_json is not None and not calls:
        call_id = f"call_{inp.step}_{forced_as_json.name}"
        calls = [ToolCall(id=call_id, name=forced_as_json.name, arguments=choice.message.content or "{}")]
        from_text = True
    elif not calls and tools:
        calls = parse_text_tool_calls(choice.message.content, {t.name for t in tools})
        from_text = bool(calls)
    reply = ChatMessage(role="assistant", content=None if from_text else choice.message.content, tool_calls=calls)
    return choice, reply, from_text


#: The largest reply a run takes: the result must fit Temporal's payload limit (2 MB by default, with
#: room for the rest of the result). A larger one would be refused by the server on every retry.
MAX_REPLY_BYTES = 1_000_000


def _fits_history(reply: ChatMessage, model: str) -> None:
    size = len((reply.content or "").encode()) + sum(len(c.arguments.encode()) + len(c.name) for c in reply.tool_calls)
    if size > MAX_REPLY_BYTES:
        raise ApplicationError(
            f"model {model} replied with {size:,} bytes, over the {MAX_REPLY_BYTES:,} a run takes in one reply "
            "(a runaway generation? lower max_tokens)",
            type=MODEL_RESPONSE_TOO_LARGE,
            non_retryable=True,
        )


class ModelActivities:

    def __init__(
        self, endpoints: EndpointRegistry, transcripts: TranscriptStore, pricing: Pricing | None = None,
        budget: BudgetLedger | None = None, admissions: Admissions | None = None, releases: ReleaseRegistry | None = None,
    ):  # fmt: skip
        self._endpoints = endpoints
        self._transcripts = transcripts
        self._pricing = pricing or Pricing()
        if budget is not None and budget.db_url != transcripts.db_url:
            raise ValueError("the envelope ledger and the transcripts must share one store (a call settles with its transcript)")
        self._budget = budget
        self._admissions = admissions
        self._releases = releases or (admissions.releases if admissions is not None else ReleaseRegistry())
        self._clients: dict[tuple[str, str], openai.AsyncOpenAI] = {}

    def _client(self, ep: Endpoint) -> openai.AsyncOpenAI:
        key = (ep.base_url, ep.api_key)
        client = self._clients.get(key)
        if client is None:
            # The client's aiohttp transport: the same proxies, certificates and timeouts as its
            # default httpx one, at about half the CPU per call with many calls in flight.
            client = openai.AsyncOpenAI(
                base_url=ep.base_url, api_key=ep.api_key, max_retries=0, http_client=openai.DefaultAioHttpClient()
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        """Close the endpoints' connections (the worker stops)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def _write_and_settle(
        self, inp: ModelCallInput, messages: list[ChatMessage], envelope: EnvelopeRef, reservation: str, cost: float
    ) -> BudgetNote:
        budget = self._budget
        assert budget is not None
        try:
            settled = await asyncio.to_thread(
                self._transcripts.write, inp.transcript_id, inp.base_seq, messages,
                also=lambda conn: budget.settle_in(conn, envelope, reservation, cost),
            )  # fmt: skip
        except Exception:
            # Neither is written: book the cost on its own before this attempt fails (a retry calls again).
            await budget.settle(envelope, reservation, cost)
            raise
        return budget.settled(settled)

    def _opening(self, inp: ModelCallInput) -> tuple[ChatMessage, str]:
        """The system message a conversation opens with, from this worker's own copy of the run's
        release, and the SHA-256 of the prompt text it carries (what the audit trail records)."""
        assert inp.prompt is not None
        release = self._releases.prompt(inp.prompt)
        if release is None:  # a worker deployed with other agents: another one may hold it
            raise ApplicationError(
                f"this worker does not hold release {inp.prompt.agent} {inp.prompt.version} "
                f"(prompt {inp.prompt.prompt_sha256[:12]}); another worker may",
                type=RELEASE_UNAVAILABLE,
            )
        sent = hashlib.sha256(release.prompt.encode("utf-8")).hexdigest()
        return ChatMessage(role="system", content=system_prompt(release.prompt, release.spec.output_schema)), sent

    @activity.defn(name=Activity.CALL_MODEL)
    async def call_model(self, inp: ModelCallInput) -> ModelCallResult:
        """One model call, in named steps: admission, transcript, request body, reservation, call, settlement."""
        admitted = await self._admit(inp)
        if admitted is not None and admitted.switch is not None:  # refused: no call is made
            return ModelCallResult(
                message=ChatMessage(role="assistant"), usage=Usage(), model=inp.model.name, admitted=admitted, attempt=activity.info().attempt
            )
        try:
            ep = self._endpoints.resolve(inp.model.endpoint)
        except EndpointNotConfigured as e:
            raise ApplicationError(str(e), type=MODEL_CALL_REJECTED, non_retryable=True) from None
        opening, sent_prompt, messages = await self._transcript(inp)
        model_name = ep.model_override or inp.model.name
        body, forced_as_json, tools = request_body(inp, ep, model_name, messages)
        envelope = inp.envelope if self._budget is not None else None
        reservation, refused = await self._reserve(inp, envelope, model_name)
        if refused is not None:  # not made, nothing spent: the workflow pauses or stops the run
            return ModelCallResult(
                message=ChatMessage(role="assistant"), usage=Usage(), model=model_name, budget=refused, admitted=admitted,
                attempt=activity.info().attempt,
            )  # fmt: skip
        resp = await self._call(inp, ep, body, envelope, reservation)
        return await self._settle(inp, resp, model_name, opening, envelope, reservation, forced_as_json, tools, admitted, sent_prompt)

    async def _admit(self, inp: ModelCallInput) -> Admitted | None:
        """A run's first call: refused under a kill switch, else its policy (other calls: None)."""
        if inp.admission is None:
            return None
        if self._admissions is None:
            raise ApplicationError(
                "this worker cannot admit runs (no store for kill switches and policies)", type=MODEL_CALL_REJECTED, non_retryable=True
            )
        return await asyncio.to_thread(self._admissions.admit, inp.admission)

    async def _transcript(self, inp: ModelCallInput) -> tuple[list[ChatMessage], str | None, list[ChatMessage]]:
        """The conversation to send: the opening (a fresh conversation), the stored prefix, the delta."""
        opening: list[ChatMessage] = []
        sent_prompt = None
        if inp.prompt is not None and inp.base_seq == 0:
            system, sent_prompt = self._opening(inp)
            opening = [system]
        try:
            messages = self._transcripts.cached_prefix(inp.transcript_id, inp.base_seq)
            if messages is None:  # not this worker's run so far: read the store, off the event loop
                messages = await asyncio.to_thread(self._transcripts.prefix, inp.transcript_id, inp.base_seq)
        except TranscriptGap as e:
            raise ApplicationError(str(e), type=TRANSCRIPT_MISSING, non_retryable=True) from None
        return opening, sent_prompt, opening + messages + inp.delta

    async def _reserve(self, inp: ModelCallInput, envelope: EnvelopeRef | None, model_name: str) -> tuple[str, BudgetNote | None]:
        """Hold the most this call can cost in its envelope: the reservation id, and the note if refused."""
        if envelope is None:
            return "", None
        info = activity.info()
        reservation = f"{info.workflow_id}|{inp.step}|{info.attempt}"
        most = self._pricing.cost(model_name, envelope.max_prompt_tokens, inp.model.max_tokens)
        note = await self._budget.reserve(envelope, reservation, most)
        return reservation, (None if note.granted else note)

    async def _call(self, inp: ModelCallInput, ep: Endpoint, body: dict[str, Any], envelope: EnvelopeRef | None, reservation: str) -> ChatCompletion:
        """Post the body; a failure gives the hold back and becomes a typed, retryable-or-not error."""
        try:
            # The body is already plain JSON, so it goes through the client's documented low-level
            # `post` (same auth, timeouts, errors and response model) without the per-call
            # TypedDict transform of `chat.completions.create`, which costs more than the call here.
            return await _heartbeating(
                self._client(ep).post(
                    "/chat/completions", cast_to=ChatCompletion, body=body, options={"timeout": inp.model.timeout_seconds}
                )
            )
        except BaseException as e:
            if envelope is not None:  # nothing answered, nothing spent: the hold goes back
                self._budget.release(reservation)
            if not isinstance(e, openai.OpenAIError):
                raise
            if isinstance(e, (openai.APIStatusError, openai.APIConnectionError)):
                raise to_application_error(e, ep.profile, retried=will_retry(activity.info())) from None
            raise ApplicationError(f"model call failed: {type(e).__name__}: {e}", type=MODEL_RESPONSE_INVALID) from None

    async def _settle(
        self, inp: ModelCallInput, resp: ChatCompletion, model_name: str, opening: list[ChatMessage], envelope: EnvelopeRef | None,
        reservation: str, forced_as_json: Any, tools: list, admitted: Admitted | None, sent_prompt: str | None,
    ) -> ModelCallResult:  # fmt: skip
        """The endpoint answered: its cost booked whatever happens next, the reply and new messages written."""
        u = resp.usage
        prompt_tokens = u.prompt_tokens if u else 0
        completion_tokens = u.completion_tokens if u else 0
        cost = self._pricing.cost(model_name, prompt_tokens, completion_tokens)
        try:
            choice, reply, from_text = _reply(resp, inp, forced_as_json, tools)
            _fits_history(reply, model_name)
        except Exception:
            if envelope is not None:
                await self._budget.settle(envelope, reservation, cost)
            raise
        # One write per call: the new messages and the reply, at fixed positions (a retry rewrites
        # them), in the same transaction as the call's settlement when the ledger is in that store.
        messages = [*opening, *inp.delta, reply]
        budget = None
        if envelope is None:
            await asyncio.to_thread(self._transcripts.write, inp.transcript_id, inp.base_seq, messages)
        else:
            budget = await self._write_and_settle(inp, messages, envelope, reservation, cost)
        return ModelCallResult(
            budget=budget,
            admitted=admitted,
            message=reply,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost, model_calls=1),
            model=resp.model or model_name,
            finish_reason=choice.finish_reason,
            tool_calls_from_text=from_text,
            attempt=activity.info().attempt,
            prompt_sha256=sent_prompt,
        )
