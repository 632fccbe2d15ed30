"""Activities: every piece of I/O the factory does (model calls, tools, stores).

Not workflow-safe as a package; `activities.tools.catalog` and the tool
declaration modules it imports are the exceptions, named as such.
"""
