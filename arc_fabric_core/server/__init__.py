"""The orchestrator server: REST API, event stream and web UI over the runtime.

python -m arc_fabric_core serve            # http://127.0.0.1:8188
"""

# How every server of ours runs uvicorn. No per-message compression on the event stream:
# deflating each event once per client took most of the event loop under load (the
# previews are JPEG, already compressed), and API answers waited seconds behind it.
UVICORN_OPTIONS: dict[str, object] = {"ws_per_message_deflate": False, "log_level": "warning"}
