"""Endpoint profiles: where a model lives and the key to reach it.

Not workflow-safe (reads the environment). Agent specs name a profile; the URL
and key come only from the worker's environment, so they never enter history:

    AIFACTORY_ENDPOINT_<PROFILE>_BASE_URL   e.g. https://api.openai.com/v1
    AIFACTORY_ENDPOINT_<PROFILE>_API_KEY    optional (local servers need none)
    AIFACTORY_ENDPOINT_<PROFILE>_MODEL      optional: overrides the spec's model name
    AIFACTORY_ENDPOINT_<PROFILE>_JSON_MODE  `json_schema` (OpenAI, default) or `json_object`
                                            (llama.cpp's server: `{"type": "json_object", "schema": ...}`)
    AIFACTORY_ENDPOINT_<PROFILE>_TOOL_RESULTS_AS_USER  `1` for chat templates without a tool role

`OPENAI_BASE_URL` / `OPENAI_API_KEY` are honoured for the `default` profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Endpoint:
    profile: str
    base_url: str
    api_key: str = field(default="not-needed", repr=False)
    model_override: str | None = None
    json_mode: str = "json_schema"
    """How the endpoint takes a JSON schema for the answer: `json_schema` or `json_object`."""
    tool_results_as_user: bool = False
    """Send tool results as user messages, for chat templates that drop the `tool` role
    (llama.cpp's `chatml-function-calling` renders tool calls but not their results)."""
    forced_tools_as_json: bool = False
    """Ask for a forced tool call as a JSON answer constrained by the tool's schema, without
    sending `tools`: every call of a run then shares one system prompt, so a local server
    reuses its evaluated prefix instead of processing the whole prompt again."""


class EndpointNotConfigured(LookupError):
    pass


class EndpointRegistry:
    """Resolves profile names to endpoints; explicit registrations win over the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        self._explicit: dict[str, Endpoint] = {}

    def register(self, endpoint: Endpoint) -> None:
        self._explicit[endpoint.profile] = endpoint

    def resolve(self, profile: str) -> Endpoint:
        if profile in self._explicit:
            return self._explicit[profile]
        prefix = f"AIFACTORY_ENDPOINT_{profile.upper()}_"
        base = self._env.get(prefix + "BASE_URL")
        key = self._env.get(prefix + "API_KEY")
        if base is None and profile == "default":
            base = self._env.get("OPENAI_BASE_URL")
            key = key or self._env.get("OPENAI_API_KEY")
        if not base:
            raise EndpointNotConfigured(
                f"endpoint profile {profile!r} is not configured on this worker: set {prefix}BASE_URL"
            )
        return Endpoint(
            profile, base.rstrip("/"), key or "not-needed", self._env.get(prefix + "MODEL") or None,
            self._env.get(prefix + "JSON_MODE") or "json_schema",
            (self._env.get(prefix + "TOOL_RESULTS_AS_USER") or "").lower() in ("1", "true", "yes"),
        )

    def profiles(self) -> list[str]:
        names = set(self._explicit)
        for k in self._env:
            if k.startswith("AIFACTORY_ENDPOINT_") and k.endswith("_BASE_URL"):
                names.add(k[len("AIFACTORY_ENDPOINT_") : -len("_BASE_URL")].lower())
        return sorted(names)
