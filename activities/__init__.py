"""Activities: every piece of I/O the factory does (model calls, tools, stores).

Not workflow-safe as a package; each tool family's `declarations` module is the
exception, named as such (the catalog they declare into is `contracts.catalog`).
"""
