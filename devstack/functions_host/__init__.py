"""Local Azure Functions host: runs a v2-model ``function_app.py`` in-process where Core Tools are not available.

``FunctionsHost`` runs it in this process; ``FunctionsHostProcess`` starts ``python -m devstack.functions_host``
as a subprocess and waits for its readiness line (what the stack runner and the tests use).
"""

from .host import FunctionsHost, HostOptions
from .process import FunctionsHostProcess

__all__ = ["FunctionsHost", "FunctionsHostProcess", "HostOptions"]
