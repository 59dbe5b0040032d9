"""The orchestrator server: REST API, event stream and web UI over the runtime.

python -m arc_fabric_core serve            # http://127.0.0.1:8188
"""
