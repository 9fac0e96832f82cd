"""examples/janus/bridge.py without Janus: a publisher that Janus does not list yet (its
negotiation unfinished) is not unmapped while the bridge sets up its forwarder."""
import argparse
import asyncio

from conftest import load_script


def load_bridge():
    return load_script("janus_bridge", "examples/janus/bridge.py")


class FakeStub:
    def __init__(self):
        self.calls = []

    async def MapRtpSource(self, source):
        self.calls.append(("map", source.participant_id, source.ssrc))

    async def UnmapRtpSource(self, request):
        self.calls.append(("unmap", request.ssrc))


class FakeRequest:
    def __init__(self, body):
        self.body = body

    async def json(self):
        return self.body


def test_a_publisher_janus_does_not_list_yet_stays_mapped_while_it_is_forwarded():
    bridge_module = load_bridge()

    async def scenario():
        bridge = bridge_module.Bridge(argparse.Namespace(rtp_port=5004))
        bridge.stub = FakeStub()
        listed = []                     # Janus's publishers: none until negotiation ends
        forward_asked = asyncio.Event()
        janus_forwards = asyncio.Event()

        async def janus(body):
            if body["request"] == "listparticipants":
                return {"participants": [{"id": p, "publisher": True} for p in listed]}
            if body["request"] == "rtp_forward":
                forward_asked.set()
                await janus_forwards.wait()
                return {"videoroom": "rtp_forward", "forwarders": [{"stream_id": 7}]}
            return {}
        bridge.janus = janus
        publish = asyncio.create_task(bridge.publish(
            FakeRequest({"participant": "bob", "publisher_id": 42})))
        await forward_asked.wait()
        await bridge.drop_vanished()    # the watcher's round while bob is being set up
        janus_forwards.set()
        response = await publish
        assert response.status == 200
        assert [c[0] for c in bridge.stub.calls] == ["map"]
        assert bridge.sources["bob"][1:] == (42, 7)
        # once set up, a publisher Janus no longer lists (a closed tab) is unmapped
        await bridge.drop_vanished()
        assert [c[0] for c in bridge.stub.calls] == ["map", "unmap"]
        assert "bob" not in bridge.sources

    asyncio.run(scenario())
