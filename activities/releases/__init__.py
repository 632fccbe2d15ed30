"""Agents as releases: loaded from their folders, held to the admission gate, resolved for runs.

Not workflow-safe (reads files). `loader` reads an agent folder, `gate` holds it
to the deployment standard, and `registry` is what a worker runs: the admitted
releases it was deployed with, which it alone resolves runs against.
"""
