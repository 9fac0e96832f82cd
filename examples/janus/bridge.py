"""The demo's glue between Janus and speakerswitch (examples only, not part of the service).

- serves the page (static/) and Debian's janus.js (libjs-janus-gateway) from one origin;
- POST /bridge/publish {"participant", "publisher_id"}: asks Janus (its HTTP API, on
  loopback) to rtp_forward that publisher's audio to speakerswitch's RTP port with an SSRC
  chosen here, then maps the SSRC to the participant with MapRtpSource (gRPC);
- POST /bridge/leave {"participant"}: stops the forwarder and UnmapRtpSource (the participant
  leaves); a publisher that vanishes (closed tab) is unmapped when Janus reports it gone;
- /janus: proxied to Janus's HTTP API and
- /api/*: proxied to speakerswitch's HTTP API (decisions as SSE, camera/pin events), so the
  page talks to one origin. The page holds no switching logic.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import time
import zlib

import aiohttp
import grpc
from aiohttp import web

from service.api import speakerswitch_pb2 as pb
from service.api import speakerswitch_pb2_grpc as pbg

HERE = os.path.dirname(os.path.abspath(__file__))
JANUS_JS = "/usr/share/javascript/janus-gateway/janus.js"  # Debian: libjs-janus-gateway
ADAPTER_JS = "/usr/share/javascript/webrtc-adapter/adapter.js"  # Debian: libjs-webrtc-adapter
ROOM = 1234  # examples/janus/conf/janus.plugin.videoroom.jcfg
ROOM_ID = "janus-1234"  # the speakerswitch room
FORWARD_TRIES, FORWARD_RETRY_S = 10, 0.3
"""rtp_forward asked again for up to 3 s while Janus refuses it for a publisher that is
still being set up (seen once in a clean-clone `make test` on a busy 2-core machine)."""
NEGOTIATION_S = 20.0
"""Janus lists a publisher only once its PeerConnection is up (ICE and DTLS done), which
comes after its forwarder is made (the page publishes at 'configured'): the watcher does
not take one it has never listed for gone until this long after its forward. Seconds on
a busy machine; a publisher still not up after this is not coming."""
log = logging.getLogger("bridge")


class Bridge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stub: pbg.SpeakerSwitchStub | None = None  # made on the server's loop
        self.sources: dict[str, tuple[int, int, int]] = {}  # participant -> (ssrc, pub, stream)
        self.publishing: set[str] = set()  # mapped, its forwarder not yet set up
        self.forwarded_at: dict[str, float] = {}  # by the clock below
        self.listed: set[str] = set()  # set up and listed by Janus since
        self.clock = time.monotonic
        self.http: aiohttp.ClientSession | None = None
        self.janus_session = 0
        self.janus_handle = 0
        # one session and handle, made by whichever request comes first: two made at once
        # (the publisher watcher and a publish) paired one's session with the other's
        # handle, and Janus refused every request after ('No such handle')
        self.attaching = asyncio.Lock()

    async def janus(self, body: dict) -> dict:
        """One synchronous VideoRoom request on the bridge's own Janus handle."""
        assert self.http is not None
        async with self.attaching:
            if not self.janus_handle:
                async with self.http.post(self.args.janus, json={"janus": "create",
                                                                 "transaction": "c"}) as r:
                    session = (await r.json())["data"]["id"]
                async with self.http.post(f"{self.args.janus}/{session}", json={
                        "janus": "attach", "plugin": "janus.plugin.videoroom",
                        "transaction": "a"}) as r:
                    self.janus_handle = (await r.json())["data"]["id"]
                self.janus_session = session
        url = f"{self.args.janus}/{self.janus_session}/{self.janus_handle}"
        async with self.http.post(url, json={"janus": "message", "transaction": "m",
                                             "body": body}) as r:
            reply = await r.json()
        return reply.get("plugindata", {}).get("data", reply)

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(20)
            if self.janus_session and self.http is not None:
                try:
                    async with self.http.post(f"{self.args.janus}/{self.janus_session}", json={
                            "janus": "keepalive", "transaction": "k"}):
                        pass
                except aiohttp.ClientError:
                    pass

    async def watch_publishers(self) -> None:
        """A closed tab: Janus drops its publisher; unmap whoever is no longer listed."""
        while True:
            await asyncio.sleep(1)
            await self.drop_vanished()

    async def drop_vanished(self) -> None:
        """Unmap the publishers Janus no longer lists, but not one still being published:
        Janus lists a publisher only once its negotiation is done, and unmapping it then
        (while `publish` waits for its forwarder) left its audio unmapped for the call.
        Only those already set up when Janus was asked are judged by its answer (one whose
        publish ended while the list was on its way was not in it), and only once Janus
        has listed them, or NEGOTIATION_S after their forward: one not up yet is not gone
        (a slow machine's ICE and DTLS took longer than the watcher's second, and the
        publisher went unheard for the call)."""
        settled = {n: s for n, s in self.sources.items() if n not in self.publishing}
        if not settled:
            return
        try:
            data = await self.janus({"request": "listparticipants", "room": ROOM})
        except (aiohttp.ClientError, KeyError):
            return
        live = {p["id"] for p in data.get("participants", []) if p.get("publisher")}
        now = self.clock()
        for name, source in settled.items():
            if self.sources.get(name) != source or name in self.publishing:
                continue  # published again meanwhile: not what Janus was asked about
            if source[1] in live:
                self.listed.add(name)
            elif (name in self.listed
                  or now - self.forwarded_at.get(name, -math.inf) >= NEGOTIATION_S):
                await self.unmap(name, "Janus no longer lists it" if name in self.listed
                                 else f"Janus has not listed it in {NEGOTIATION_S:.0f} s")

    async def unmap(self, name: str, why: str = "") -> None:
        ssrc, pub, stream = self.sources.pop(name, (0, 0, 0))
        self.listed.discard(name)
        self.forwarded_at.pop(name, None)
        if not ssrc:
            return
        log.info("%s leaves (%s): stop forwarding, unmap SSRC %d", name, why, ssrc)
        try:
            await self.janus({"request": "stop_rtp_forward", "room": ROOM,
                              "publisher_id": pub, "stream_id": stream})
        except (aiohttp.ClientError, KeyError):
            pass
        try:
            assert self.stub is not None
            await self.stub.UnmapRtpSource(pb.UnmapRtpSourceRequest(ssrc=ssrc))
        except grpc.aio.AioRpcError:
            pass

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body["participant"])
        self.publishing.add(name)
        try:
            return await self._publish(name, int(body["publisher_id"]), body)
        finally:
            self.publishing.discard(name)

    async def _publish(self, name: str, pub: int, body: dict) -> web.Response:
        await self.unmap(name, "published again")
        ssrc = zlib.crc32(f"{name}/{pub}".encode()) or 1
        # mapped first: the participant is then in speakerswitch's room (MapRtpSource joins
        # it), so the page's camera and pin events find it, and no packet goes unmapped
        assert self.stub is not None
        await self.stub.MapRtpSource(pb.RtpSource(ssrc=ssrc, room_id=ROOM_ID,
                                                  participant_id=name))
        self.sources[name] = (ssrc, pub, 0)
        forward = {"request": "rtp_forward", "room": ROOM, "publisher_id": pub,
                   "host": "127.0.0.1", "host_family": "ipv4",
                   "streams": [{"mid": str(body.get("audio_mid", "0")),
                                "port": self.args.rtp_port, "ssrc": ssrc}]}
        for _ in range(FORWARD_TRIES):
            fwd = await self.janus(forward)
            streams = fwd.get("forwarders") or fwd.get("rtp_stream") or []
            if fwd.get("videoroom") == "rtp_forward" and streams:
                break
            # a publisher whose negotiation Janus has not finished (a busy machine) is
            # refused for a moment: ask again rather than leave it unheard for the call
            await asyncio.sleep(FORWARD_RETRY_S)
        else:
            log.warning("Janus refused to forward %s: %s", name, fwd)
            await self.unmap(name, "Janus did not forward it")
            return web.json_response({"error": fwd}, status=502)
        stream = streams[0].get("stream_id", 0) if isinstance(streams, list) else 0
        self.sources[name] = (ssrc, pub, stream)
        self.forwarded_at[name] = self.clock()
        log.info("%s (publisher %d) forwarded to the RTP ingest as SSRC %d", name, pub, ssrc)
        return web.json_response({"room": ROOM_ID, "ssrc": ssrc})

    async def leave(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())  # sendBeacon posts text/plain
        await self.unmap(str(body["participant"]), "its page left")
        return web.json_response({})

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        assert self.http is not None
        path = request.rel_url.path_qs
        url = (self.args.janus.removesuffix("/janus") if path.startswith("/janus")
               else self.args.api) + path
        try:
            upstream = await self.http.request(
                request.method, url, data=await request.read(),
                headers={k: v for k, v in request.headers.items()
                         if k.lower() in ("content-type", "accept")},
                timeout=aiohttp.ClientTimeout(total=None))
        except aiohttp.ClientConnectionError as e:  # not started yet, or gone
            return web.json_response({"error": str(e)}, status=502)
        async with upstream as r:
            resp = web.StreamResponse(status=r.status, headers={
                "Content-Type": r.headers.get("Content-Type", "application/json"),
                "Cache-Control": "no-cache"})
            try:
                await resp.prepare(request)
                async for chunk in r.content.iter_any():
                    await resp.write(chunk)
            except ConnectionResetError:  # the page went away (an event stream, mostly)
                pass
            return resp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--janus", default="http://127.0.0.1:8088/janus")
    ap.add_argument("--grpc", default="127.0.0.1:50061")
    ap.add_argument("--api", default="http://127.0.0.1:8081")
    ap.add_argument("--rtp-port", type=int, default=5004)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    bridge = Bridge(args)
    app = web.Application()

    async def start(_: web.Application) -> None:
        bridge.http = aiohttp.ClientSession()
        bridge.stub = pbg.SpeakerSwitchStub(grpc.aio.insecure_channel(args.grpc))
        app["tasks"] = [asyncio.create_task(bridge.keepalive()),
                        asyncio.create_task(bridge.watch_publishers())]

    async def stop(_: web.Application) -> None:
        for t in app["tasks"]:
            t.cancel()
        assert bridge.http is not None
        await bridge.http.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/", lambda _: web.FileResponse(os.path.join(HERE, "static/index.html")))
    app.router.add_get("/janus.js", lambda _: web.FileResponse(JANUS_JS))
    app.router.add_get("/adapter.js", lambda _: web.FileResponse(ADAPTER_JS))
    app.router.add_static("/static", os.path.join(HERE, "static"))
    app.router.add_post("/bridge/publish", bridge.publish)
    app.router.add_post("/bridge/leave", bridge.leave)
    app.router.add_route("*", "/api/{tail:.*}", bridge.proxy)
    app.router.add_route("*", "/janus{tail:.*}", bridge.proxy)  # Janus's API, same origin
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
