"""OIDC bearer tokens at the gateway: JWTs checked against a real JWKS served over HTTP on
127.0.0.1, signed with keys made here. A valid token starts, reads and decides within its
claims' scope; an expired one, one from another issuer or audience, one signed by a key the
set lacks, and an algorithm swap are 401, each saying why; a key set that cannot be fetched
is 503, not a refusal of a token that may be valid."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.gateway.oidc import GatewayConfigError, JwtConfig, JwtVerifier
from tests.support.gateway import STARTS, gateway, problems_named
from tests.support.harness import factory_with
from tests.test_approvals_devserver import DONE, P1, TICKET, parked

ISSUER, AUDIENCE = "https://idp.example.test/realms/factory", "aifactory-gateway"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
START = STARTS.format(agent="it-triage")


def jwks() -> dict[str, Any]:
    rsa_jwk = {**json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": "rsa-1", "use": "sig", "alg": "RS256"}
    ec_jwk = {**json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key())), "kid": "ec-1", "use": "sig", "alg": "ES256"}
    return {"keys": [rsa_jwk, ec_jwk]}


@contextlib.contextmanager
def serve_jwks() -> Iterator[str]:
    """The identity provider's key set, as it publishes it: JSON over HTTP."""
    payload = json.dumps(jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/realms/factory/protocol/openid-connect/certs"
    finally:
        server.shutdown()
        server.server_close()


def token(key=RSA_KEY, kid: str = "rsa-1", algorithm: str = "RS256", lifetime: int = 300, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "f81d4fae-7dec", "preferred_username": "maria.keller", "iat": now, "exp": now + lifetime,
        "aifactory_tenants": ["acme"], "aifactory_agents": ["it-triage"], **claims,
    }  # fmt: skip
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm, headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_valid_tokens_start_read_and_decide_within_their_claims(client, db_url):
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    with serve_jwks() as url:
        # People carry a username; the ERP's service-account token does not, so it acts for no person
        # and may name the employee it starts a run for.
        verifier = JwtVerifier(JwtConfig(url, ISSUER, AUDIENCE, person_claim="preferred_username"))
        async with factory_with(client, db_url, model) as f, gateway(f.factory, db_url, verifier) as gw:
            system = bearer(token(sub="svc-erp", aifactory_tenants="acme globex", preferred_username=None))
            body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": TICKET, "version": f.release().spec.version, "requester": "ana.silva"}
            started = await gw.http.post(START, json=body, headers=system)
            assert started.status_code == 201, started.text
            wid = started.json()["run_id"]
            await parked(f.factory.handle(wid))
            ec_lead = bearer(token(EC_KEY, "ec-1", "ES256"))
            read = await gw.http.get(f"/v1/runs/{wid}", headers=ec_lead)
            decided = await gw.http.post(f"/v1/runs/{wid}/decisions", json={"verdict": "approve", "note": "confirmed"}, headers=ec_lead)
            done = await gw.until(wid, system)
            other_tenant = await gw.http.get(f"/v1/runs/{wid}", headers=bearer(token(aifactory_tenants=["globex"])))
            no_agents = await gw.http.get(f"/v1/runs/{wid}", headers=bearer(token(aifactory_agents=None)))
            everything = await gw.http.get(f"/v1/runs/{wid}", headers=bearer(token(aifactory_tenants=["*"], aifactory_agents="*")))
    assert read.status_code == 200 and read.json()["progress"]["state"] == "awaiting_approval"
    assert decided.status_code == 200 and decided.json()["person"] == "maria.keller" and decided.json()["accepted"]
    assert done["status"] == "completed" and done["result"]["approvals"][0]["decided_by"] == "maria.keller"
    assert done["result"]["approvals"][0]["requester"] == "ana.silva"
    problems_named(other_tenant, 403, "token of f81d4fae-7dec does not cover tenant 'acme'")
    problems_named(no_agents, 403, "does not cover agent 'it-triage'")
    assert everything.status_code == 200


async def test_tokens_that_do_not_check_out_are_401_saying_why(client, db_url):
    now = int(time.time())
    refused = {
        "expired": (token(lifetime=-600), "the token has expired"),
        "another issuer": (token(iss="https://evil.example.test"), "another issuer"),
        "another audience": (token(aud="someone-else"), "another audience"),
        "unknown key": (token(STRANGER, kid="rsa-2"), "not signed by a key of the configured identity provider"),
        "known kid, other key": (token(STRANGER), "signature does not verify"),
        "no expiry": (jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now}, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"}), "no 'exp' claim"),
        "HS256 with the public key": (token(kid="rsa-1", algorithm="HS256", key=b"k" * 32), "algorithm this gateway does not accept"),
        "hostile scope claim": (token(aifactory_tenants=['nobody" OR Tenant = "acme']), "'aifactory_tenants' claim must be a list of names"),
        "not a JWT": ("eyJhbGciOi.not-a-token", "not a valid signed JWT"),
    }  # fmt: skip
    with serve_jwks() as url:
        verifier = JwtVerifier(JwtConfig(url, ISSUER, AUDIENCE))
        async with factory_with(client, db_url, ScriptedModel(Turns([Reply.text(DONE)]))) as f, gateway(f.factory, db_url, verifier) as gw:
            answers = {name: await gw.http.get("/v1/approvals", headers=bearer(value)) for name, (value, _) in refused.items()}
            valid = await gw.http.get("/v1/approvals", headers=bearer(token()))
        by_default = verifier.verify(token(sub="maria.keller"))  # the person claim is `sub` unless configured
    assert (by_default.person, by_default.tenants, by_default.agents) == ("maria.keller", {"acme"}, {"it-triage"})
    for name, (_, why) in refused.items():
        problems_named(answers[name], 401, why)
        assert answers[name].headers["www-authenticate"] == 'Bearer realm="aifactory", error="invalid_token"', name
    assert valid.status_code == 200, valid.text


async def test_a_key_set_that_cannot_be_fetched_is_503(client, db_url):
    with serve_jwks() as url:
        pass  # served once, now gone: nothing listens there
    verifier = JwtVerifier(JwtConfig(url, ISSUER, AUDIENCE))
    async with factory_with(client, db_url, ScriptedModel(Turns([Reply.text(DONE)]))) as f, gateway(f.factory, db_url, verifier) as gw:
        answer = await gw.http.get("/v1/approvals", headers=bearer(token()))
        with_key = await gw.http.get("/v1/approvals", headers=gw.key())  # API keys do not need the provider
    problems_named(answer, 503, "key set (JWKS) could not be fetched")
    assert with_key.status_code == 200


def test_oidc_settings_come_whole_or_not_at_all():
    assert JwtConfig.from_env({}) is None
    with pytest.raises(GatewayConfigError, match="AIFACTORY_GATEWAY_JWT_AUDIENCE must be set too"):
        JwtConfig.from_env({"AIFACTORY_GATEWAY_JWKS_URL": "https://idp/jwks", "AIFACTORY_GATEWAY_JWT_ISSUER": ISSUER})
    config = JwtConfig.from_env({
        "AIFACTORY_GATEWAY_JWKS_URL": "https://idp/jwks", "AIFACTORY_GATEWAY_JWT_ISSUER": ISSUER,
        "AIFACTORY_GATEWAY_JWT_AUDIENCE": AUDIENCE, "AIFACTORY_GATEWAY_JWT_PERSON_CLAIM": "preferred_username",
    })  # fmt: skip
    assert config == JwtConfig("https://idp/jwks", ISSUER, AUDIENCE, person_claim="preferred_username")
