"""What a running server imports (``speakerswitch serve``): the gRPC server, the room registry,
auth, config, metrics, the event feed and its Redis fan-out, the group commit, the RTP ingest
and the web viewer. Nothing here imports ``service.tools``, ``service.demo`` or the client
(tests/test_layout.py holds it)."""
