"""Generated protobuf/gRPC modules of ``proto/speakerswitch/v1``: a copy of the server's
``service/api`` (do not edit; ``make proto`` writes both, and the repository's
``tests/test_proto_generated.py`` fails when this copy is out of date with the .proto)."""
