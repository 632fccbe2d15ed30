"""Workflows: deterministic orchestration only.

Workflow code imports contracts, the policy engine and activity references;
never openai, sqlmodel, prometheus_client or httpx.
"""
