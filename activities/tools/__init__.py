"""The tool catalog and the tools themselves.

`catalog` and the `*_tools` declaration modules are workflow-safe (models and
metadata only); the `*_activities` modules hold the implementations.
"""
