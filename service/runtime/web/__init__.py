"""The web viewer and its HTTP API (``serve --http-port``): viewer.py, with the page's files
in static/. It is started by service/runtime/server.py and imports nothing of it."""
from .viewer import (COOKIE, CSP, DemoInfo, Serving, WebViewer, event_json, message_json,
                     start_viewer)

__all__ = ["COOKIE", "CSP", "DemoInfo", "Serving", "WebViewer", "event_json", "message_json",
           "start_viewer"]
