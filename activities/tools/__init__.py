"""Tool families and the catalog their tools are declared in.

Each family is a package here (built in) or an installed distribution (the
`aifactory.tool_families` entry-point group); see `families`. A family's
`declarations` module is workflow-safe; the rest of it is not. The catalog itself
is the workflow-safe `contracts.catalog`.
"""
