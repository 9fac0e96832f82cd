"""Generated protobuf/gRPC modules of ``proto/speakerswitch/v1`` (do not edit; run
``make proto``)."""
