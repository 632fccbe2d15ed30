"""OIDC bearer tokens: JWTs verified against the identity provider's JWKS.

Not workflow-safe (fetches the JWKS over HTTP; call `verify` in a thread). Set
up from the environment, and only where `AIFACTORY_GATEWAY_JWKS_URL` is set:

    AIFACTORY_GATEWAY_JWKS_URL        the provider's key set (https://idp.example/.well-known/jwks.json)
    AIFACTORY_GATEWAY_JWT_ISSUER      the `iss` every token must carry (required with the JWKS URL)
    AIFACTORY_GATEWAY_JWT_AUDIENCE    the `aud` every token must carry (required with the JWKS URL)
    AIFACTORY_GATEWAY_JWT_TENANTS_CLAIM   claim listing the caller's tenants (default `aifactory_tenants`)
    AIFACTORY_GATEWAY_JWT_AGENTS_CLAIM    claim listing the caller's agents (default `aifactory_agents`)
    AIFACTORY_GATEWAY_JWT_PERSON_CLAIM    claim naming the directory person (default `sub`)

A token is accepted only if it is signed with RS256 or ES256 by a key in the
set, names the issuer and audience, and has not expired (30 s of clock skew
allowed). A scope claim is a list of names, or one string of names separated by
spaces or commas; `*` is all, a missing claim is none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from aifactory.gateway.callers import ALL, Caller
from aifactory.gateway.errors import Unauthenticated, Unavailable
from contracts.agent import AGENT_NAME
from contracts.run import TENANT

ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 30


class GatewayConfigError(ValueError):
    """The gateway's OIDC settings are incomplete; the message names the missing setting."""


@dataclass(frozen=True)
class JwtConfig:
    jwks_url: str
    issuer: str
    audience: str
    tenants_claim: str = "aifactory_tenants"
    agents_claim: str = "aifactory_agents"
    person_claim: str = "sub"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "JwtConfig | None":
        """The settings above, or None when no JWKS URL is set (API keys only)."""
        env = os.environ if env is None else env
        url = env.get("AIFACTORY_GATEWAY_JWKS_URL", "").strip()
        if not url:
            return None
        missing = [k for k in ("AIFACTORY_GATEWAY_JWT_ISSUER", "AIFACTORY_GATEWAY_JWT_AUDIENCE") if not env.get(k, "").strip()]
        if missing:
            raise GatewayConfigError(f"AIFACTORY_GATEWAY_JWKS_URL is set, so {' and '.join(missing)} must be set too: tokens are checked against both")
        claim = lambda name, default: env.get(f"AIFACTORY_GATEWAY_JWT_{name}_CLAIM", "").strip() or default  # noqa: E731
        return cls(
            url, env["AIFACTORY_GATEWAY_JWT_ISSUER"].strip(), env["AIFACTORY_GATEWAY_JWT_AUDIENCE"].strip(),
            claim("TENANTS", cls.tenants_claim), claim("AGENTS", cls.agents_claim), claim("PERSON", cls.person_claim),
        )  # fmt: skip


def _names(claims: dict[str, Any], claim: str, pattern: re.Pattern[str]) -> frozenset[str]:
    """The names a scope claim lists; a claim holding anything but names refuses the token (its
    names select runs in visibility queries, so they are held to the same patterns as keys' scopes)."""
    value = claims.get(claim)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [v for v in re.split(r"[\s,]+", value) if v]
    if not isinstance(value, list) or not all(isinstance(v, str) and (v == ALL or pattern.fullmatch(v)) for v in value):
        raise Unauthenticated(f"the token's {claim!r} claim must be a list of names (or {ALL!r})", invalid_token=True)
    return frozenset(value)


class JwtVerifier:
    """Verifies bearer JWTs and reads the caller from their claims."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        # The set is cached for 5 minutes; a token naming a key the set lacks refreshes it, at most every 30 s.
        self._keys = jwt.PyJWKClient(config.jwks_url, cache_keys=True, lifespan=300, timeout=10)

    def verify(self, token: str) -> Caller:
        """The caller a valid token names; `Unauthenticated` saying why a token is refused, or
        `Unavailable` when the key set cannot be fetched (the token may well be valid)."""
        c = self.config
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token, key, algorithms=list(ALGORITHMS), audience=c.audience, issuer=c.issuer, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )  # fmt: skip
        except jwt.PyJWKClientConnectionError:
            raise Unavailable("the identity provider's key set (JWKS) could not be fetched, so the token cannot be checked; try again") from None
        except jwt.PyJWKClientError:
            raise Unauthenticated("the token is not signed by a key of the configured identity provider", invalid_token=True) from None
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", invalid_token=True) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token was issued by another issuer than the one this gateway trusts", invalid_token=True) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is meant for another audience than this gateway", invalid_token=True) from None
        except jwt.MissingRequiredClaimError as e:
            raise Unauthenticated(f"the token has no {e.claim!r} claim", invalid_token=True) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify with the identity provider's key it names", invalid_token=True) from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(f"the token is signed with an algorithm this gateway does not accept (it takes {', '.join(ALGORITHMS)})", invalid_token=True) from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a valid signed JWT", invalid_token=True) from None
        person = claims.get(c.person_claim)
        subject = str(claims.get("sub") or person or "?")
        person = person if isinstance(person, str) and person.strip() else None
        return Caller(
            name=f"token of {subject}", tenants=_names(claims, c.tenants_claim, TENANT), agents=_names(claims, c.agents_claim, AGENT_NAME),
            person=person, requester=person or f"token:{subject}",
        )  # fmt: skip
