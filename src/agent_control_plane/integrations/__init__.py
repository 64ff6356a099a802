"""Framework adapters: each maps the control plane's decisions onto one agent framework's own mechanism.

Each adapter is a subpackage module with an optional extra (`pip install agent-control-plane[mcp]`, …); importing
one without its framework installed raises an ImportError that names the extra. Nothing here is re-exported.
"""
