"""Offline tools, never imported by a running server: the replay and the evaluation against
ground truth, the evaluation scenarios with their synthetic and recorded voices, plots, the
sample conversation, pcap reading, the terminal views (progress bar, ``speakerswitch watch``)
and the generator of ``service/api/``. They drive the runtime's ``RoomRegistry`` in process
or a server through gRPC."""
