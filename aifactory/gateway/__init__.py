"""The HTTP gateway: how business systems without a Temporal SDK start runs, read them, and decide approvals.

Not workflow-safe. `aifactory gateway` serves `aifactory.gateway.app.create_app`
(FastAPI on uvicorn) against the environment's factory; it is a client of the
factory, like `FactoryClient`, and holds no state of its own but its API keys
(`activities.api_keys`, in the factory's SQL store).

    app.py      create_app(factory, keys, jwt): the ASGI app, its error handlers, its OpenAPI document
    routes.py   the endpoints, thin: scope checks, then `runs`
    runs.py     what the endpoints do with the FactoryClient (run ids, reading, approvals)
    bodies.py   request and response bodies (pydantic: the OpenAPI document describes them)
    auth.py     bearer tokens: API keys or OIDC JWTs, checked before a request is read
    oidc.py     JWTs verified against a JWKS
    callers.py  who is calling: scope (tenants, agents) and the person decisions are made as
    errors.py   the one error body, and the status of every refusal
    cli.py      `aifactory gateway [--host H] [--port P]` and `aifactory gateway keys ...`

Importing this package imports nothing heavy: the CLI imports `cli` on every command.
"""
