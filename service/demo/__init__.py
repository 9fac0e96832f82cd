"""``speakerswitch demo``: a server, its web viewer and the bundled conversation (``data/``)
streamed through gRPC in real time (``live.py``), and how ``data/`` is built (``build.py``)."""
