"""Contracts: the pydantic models that cross the Temporal boundary.

Workflow-safe: no I/O, no clock, no randomness. Everything here may be
imported inside the workflow sandbox, and everything below `policies/`,
`workflows/`, `activities/`, `workers/` and the face imports from here.
"""
