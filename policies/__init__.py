"""Policies: pure decisions over the run and its tools.

Workflow-safe. The tool grant (least privilege) is decided here; the policy
bundle engine with approvals extends this module.
"""
