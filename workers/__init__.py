"""Workers: process assembly (settings, client connection, worker, dev server).

Not workflow-safe. The sandbox pass-through list is declared once, in `workers.worker`.
"""
