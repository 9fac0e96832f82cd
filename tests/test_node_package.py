"""The npm package (clients/node, issue 24): `npm pack` builds a tarball that installs on
its own into an empty project, and a script using the installed package pushes the levels
of two rooms per packet against a real server: the server processes one request per tick
for both rooms, and the decisions are those of the same levels sent the existing way."""
from __future__ import annotations

import asyncio
import json
import pathlib
import re
import shutil
import subprocess
import threading

import pytest

from conftest import ServerThread, test_config, token, token_server
from test_security import pki  # noqa: F401 (a fixture: a CA, server and client certificates)
from test_python_client import Proxy, contiguous, decisions_the_existing_way, free_port, scripts, served
from service.api import speakerswitch_pb2 as pb
from service.runtime.auth import create_token

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE, NPM = shutil.which("node"), shutil.which("npm")
MAKE_ADDRESS = "127.0.0.1:50051"  # where the docs' snippets expect `make run`
pytestmark = pytest.mark.skipif(NODE is None or NPM is None, reason="node/npm are not installed")

# What a media server does with the package: a packet per participant per 20 ms, any
# number of rooms, one flush per tick (autoFlush off so that the count is exact); with
# `shards`, a stream per shard of rooms.
SCRIPT = r"""
const fs = require('fs');
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target, input, shards] = process.argv.slice(2);
const ticks = JSON.parse(fs.readFileSync(input, 'utf8'));  // [[[room, t, [[p, level, voice]]]]]
(async () => {
  const ss = new SpeakerSwitchClient(target, { autoFlush: false, shards: Number(shards || 1) });
  let queuedAtOnce = null;  // unanswered right after the first flush resolved
  const out = [];
  ss.on('decision', (e) => out.push(e));
  const switches = [];
  ss.on('switch', (room, sw) => switches.push([room.roomId, sw.speaker_id]));
  for (const tick of ticks) {
    for (const [room, t, packets] of tick) {
      for (const [p, level, voice] of packets) ss.pushLevel(room, p, level, voice, t);
    }
    await ss.flush();
    if (queuedAtOnce === null) queuedAtOnce = ss.stats().inFlight;
  }
  await ss.close();
  const views = {};
  for (const [id, v] of ss.rooms) {
    views[id] = { speakerId: v.speakerId, sequence: v.sequence, participants: {} };
    for (const [pid, p] of v.participants) {
      views[id].participants[pid] = { isSpeaking: p.isSpeaking, lastSpokeAt: p.lastSpokeAt,
                                      audioLevel: p.audioLevel };
    }
  }
  console.log(JSON.stringify({ events: out, switches, views, stats: ss.stats(), queuedAtOnce }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


# PCM per participant per 20 ms (tracks: {participant: base64 of 16 kHz samples}) after a
# room configuration; and what a frame of the wrong length gets.
PCM = r"""
const fs = require('fs');
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target, input, config] = process.argv.slice(2);
const tracks = JSON.parse(fs.readFileSync(input, 'utf8'));
const pcm = Object.entries(tracks).map(([p, b64]) => [p, Buffer.from(b64, 'base64')]);
const frame = 640;  // 20 ms of 16-bit samples at 16 kHz
(async () => {
  const ss = new SpeakerSwitchClient(target, { autoFlush: false });
  const out = [];
  ss.on('decision', (e) => out.push([e.sequence, e.event, e.timestamp_ms,
                                     e.event === 'switch' ? e.switch.speaker_id : null]));
  if (config !== 'none') ss.configure('pcm', JSON.parse(config));
  for (let i = 0; i * frame < pcm[0][1].length; i++) {
    for (const [p, samples] of pcm) ss.pushPcm('pcm', p, samples.subarray(i * frame, (i + 1) * frame), 16000, i * 20);
    await ss.flush();
  }
  let wrong = null;
  try { ss.pushPcm('pcm', 'a', Buffer.alloc(100), 16000, 100000); } catch (err) { wrong = String(err); }
  await ss.close();
  console.log(JSON.stringify({ out, wrong, stats: ss.stats(), speaker: ss.room('pcm').speakerId }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


# In real time with the client's own tick timer and a token: `a` talks in every room.
LIVE = r"""
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target, token, nTicks] = process.argv.slice(2);
const rooms = ['live-0', 'live-1'];
const ss = new SpeakerSwitchClient(target, { token });
let error = null;
ss.on('error', (err) => { error = { code: err.code, details: err.details }; });
let i = 0;
const timer = setInterval(() => {
  try {
    for (const room of rooms) {
      for (const p of ['a', 'b', 'c']) ss.pushLevel(room, p, p === 'a' ? 30 : 80, p === 'a', i * 20);
    }
  } catch (err) { error = error || { thrown: String(err) }; }
  if (++i < Number(nTicks) && !error) return;
  clearInterval(timer);
  ss.close().catch(() => {}).then(() => {
    const speakers = rooms.map((r) => ss.room(r).speakerId);
    console.log(JSON.stringify({ stats: ss.stats(), speakers, error }));
  });
}, 20);
"""


# A conversation in real time while the test stops the server (at tick 40) and starts a
# new one on the same port (at tick 60): a talks until tick 90, then b.
RESTART = r"""
const readline = require('readline');
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target, nTicks] = process.argv.slice(2);
const ss = new SpeakerSwitchClient(target, { backoff: { initialMs: 20, maxMs: 200 } });
const seen = [];
ss.on('decision', (e) => seen.push([e.sequence, e.timestamp_ms, e.event,
                                    e.event === 'switch' ? e.switch.speaker_id : null]));
let error = null;
ss.on('error', (err) => { error = { code: err.code, details: err.details }; });
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  for (let i = 0; i < Number(nTicks); i++) {
    const talker = i < 90 ? 'a' : 'b';
    for (const p of ['a', 'b', 'c']) ss.pushLevel('r', p, p === talker ? 25 : 70, p === talker, i * 20);
    if (i === 40 || i === 60) { console.log(`at ${i}`); await lines.next(); }
    await sleep(20);
  }
  await ss.close();
  console.log(JSON.stringify({ seen, stats: ss.stats(), error, speaker: ss.room('r').speakerId }));
  process.exit(0);
})();
"""


# One client pushes two rooms, another watches one of them and lists the rooms (a page a
# room), before and after the pushing one closes the watched room.
WATCH = r"""
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target] = process.argv.slice(2);
const short = (e) => [e.sequence, e.event, e.timestamp_ms];
(async () => {
  const pusher = new SpeakerSwitchClient(target, { autoFlush: false });
  const watcher = new SpeakerSwitchClient(target, { autoFlush: false });
  const pushed = [];
  pusher.on('decision', (e) => { if (e.room_id === 'w-0') pushed.push(short(e)); });
  const watched = [];
  const following = (async () => {
    for await (const e of watcher.watch('w-0')) {
      watched.push(e.event === 'snapshot' ? [e.snapshot.sequence, 'snapshot', e.snapshot.timestamp_ms] : short(e));
    }
  })();
  for (let i = 0; i < 150; i++) {
    const talker = i < 90 ? 'a' : 'b';
    for (const room of ['w-0', 'w-1']) {
      for (const p of ['a', 'b', 'c']) pusher.pushLevel(room, p, p === talker ? 25 : 70, p === talker, i * 20);
    }
    await pusher.flush();
  }
  await pusher.answeredAll();
  const before = [];
  for await (const r of watcher.listRooms(1)) before.push(r.room_id);
  const closedAt = await pusher.closeRoom('w-0');
  await following;
  const after = [];
  for await (const r of watcher.listRooms(1)) after.push(r.room_id);
  await pusher.close();
  await watcher.close();
  console.log(JSON.stringify({ pushed, watched, before, after, closedAt }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


# A watch through a relay the test cuts (at tick 50) and restores (at tick 100) while
# another client pushes the room directly: a talks until tick 70, then b.
WATCH_CUT = r"""
const readline = require('readline');
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [direct, relayed] = process.argv.slice(2);
const short = (e) => [e.sequence, e.event, e.timestamp_ms];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
(async () => {
  const pusher = new SpeakerSwitchClient(direct, { autoFlush: false });
  const watcher = new SpeakerSwitchClient(relayed, { autoFlush: false, backoff: { initialMs: 20, maxMs: 200 } });
  const published = [];
  pusher.on('decision', (e) => published.push(short(e)));
  const watched = [];
  (async () => {
    for await (const e of watcher.watch('w')) {
      watched.push(e.event === 'snapshot' ? [e.snapshot.sequence, 'snapshot', e.snapshot.timestamp_ms] : short(e));
    }
  })();
  let cutAt = 0;
  for (let i = 0; i < 150; i++) {
    const talker = i < 70 ? 'a' : 'b';
    for (const p of ['a', 'b', 'c']) pusher.pushLevel('w', p, p === talker ? 25 : 70, p === talker, i * 20);
    await pusher.flush();
    if (i === 50 || i === 100) { console.log(`at ${i}`); await lines.next(); }
    if (i === 50) cutAt = published.length;
    await sleep(20);
  }
  await pusher.answeredAll();
  for (let k = 0; k < 200; k++) {  // until the watcher has caught up
    if (watched.length && published.length && watched[watched.length - 1][0] === published[published.length - 1][0]) break;
    await sleep(20);
  }
  console.log(JSON.stringify({ watched, published, cutAt }));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
"""


# Pushing in real time to a server that is not there yet (its port given), then is.
AWAY = r"""
const readline = require('readline');
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
(async () => {
  const ss = new SpeakerSwitchClient(target, { maxPending: 60, maxInFlight: 2, backoff: { initialMs: 20, maxMs: 100 } });
  let error = null;
  ss.on('error', (err) => { error = String(err); });
  const push = (i) => { for (const p of ['a', 'b', 'c']) ss.pushLevel('b', p, p === 'a' ? 25 : 70, p === 'a', i * 20); };
  let i = 0;
  for (; i < 100; i++) { push(i); await sleep(20); }
  const away = ss.stats();
  console.log('away ' + JSON.stringify(away));
  await lines.next();
  for (; i < 150; i++) { push(i); await sleep(20); }
  await ss.close();
  console.log(JSON.stringify({ stats: ss.stats(), error, speaker: ss.room('b').speakerId }));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
"""


# Mutual TLS with a private CA and a token asked for when the stream opens.
TLS = r"""
const { SpeakerSwitchClient, tlsCredentials } = require('speakerswitch-client');
const [target, pki, token] = process.argv.slice(2);
(async () => {
  let asked = 0;
  const ss = new SpeakerSwitchClient(target, {
    autoFlush: false, token: () => { asked += 1; return token; },
    tls: tlsCredentials(`${pki}/ca.pem`, `${pki}/client.pem`, `${pki}/client.key`),
  });
  for (let i = 0; i < 60; i++) {
    for (const p of ['a', 'b', 'c']) ss.pushLevel('tls', p, p === 'a' ? 25 : 70, p === 'a', i * 20);
    await ss.flush();
  }
  await ss.answeredAll();
  const listed = [];
  for await (const r of ss.listRooms()) listed.push(r.room_id);
  await ss.close();
  console.log(JSON.stringify({ speaker: ss.room('tls').speakerId, listed, asked, stats: ss.stats() }));
})().catch((err) => { console.error(String(err)); process.exit(1); });
"""


ROGUE = r"""
const { SpeakerSwitchClient, tlsCredentials } = require('speakerswitch-client');
const [target, pki, token] = process.argv.slice(2);
(async () => {
  const ss = new SpeakerSwitchClient(target, {
    autoFlush: false, token, backoff: { initialMs: 20, maxMs: 100 },
    tls: tlsCredentials(`${pki}/ca.pem`, `${pki}/rogue.pem`, `${pki}/rogue.key`),
  });
  for (let i = 0; i < 2; i++) {
    ss.pushLevel('tls', 'a', 25, true, i * 20);
    await ss.flush();
  }
  await new Promise((resolve) => setTimeout(resolve, 1500));
  console.log(JSON.stringify(ss.stats()));
  process.exit(0);
})();
"""


# A 'switch' listener with a bug: reported, and the decisions go on.
BROKEN_LISTENER = r"""
const { SpeakerSwitchClient } = require('speakerswitch-client');
const [target] = process.argv.slice(2);
(async () => {
  const ss = new SpeakerSwitchClient(target, { autoFlush: false });
  ss.on('switch', () => { throw new Error("the application's bug"); });
  for (let i = 0; i < 150; i++) {
    const talker = i < 70 ? 'a' : 'b';
    for (const p of ['a', 'b', 'c']) ss.pushLevel('cb', p, p === talker ? 25 : 70, p === talker, i * 20);
    await ss.flush();
  }
  await ss.close();
  console.log(JSON.stringify({ speaker: ss.room('cb').speakerId, stats: ss.stats() }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


def run(cmd: list[str], cwd: pathlib.Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


_packed: dict[str, pathlib.Path] = {}


def packed(tmp_path_factory) -> pathlib.Path:
    """The package's tarball, packed once per test session from a copy of the sources (the
    repository's tree stays free of node_modules); skips when the registry is unreachable.
    tests/test_node_client.py installs the example from it too."""
    if "tarball" in _packed:
        return _packed["tarball"]
    if NODE is None or NPM is None:
        pytest.skip("node/npm are not installed")
    work = tmp_path_factory.mktemp("npm")
    src = work / "clients" / "node"
    shutil.copytree(ROOT / "clients" / "node", src,
                    ignore=shutil.ignore_patterns("node_modules", "dist", "proto", "*.tgz"))
    shutil.copytree(ROOT / "proto", work / "proto")
    # --ignore-scripts: its `prepare` builds, and `npm pack` runs that itself
    r = run([NPM, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], src, 600)
    if r.returncode != 0 and ("ENOTFOUND" in r.stderr or "EAI_AGAIN" in r.stderr
                              or "ECONNREFUSED" in r.stderr or "ETIMEDOUT" in r.stderr):
        pytest.skip(f"the npm registry is unreachable: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([NPM, "pack", "--silent"], src)
    assert r.returncode == 0, r.stdout + r.stderr
    tarball = src / r.stdout.strip().splitlines()[-1]
    assert tarball.is_file(), r.stdout
    _packed["tarball"] = tarball
    return tarball


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
    """The package installed from its tarball into an empty project."""
    tarball = packed(tmp_path_factory)
    work = tarball.parent.parent.parent
    listing = run(["tar", "tzf", str(tarball)], work).stdout.split()
    # compiled code, its types and the contract; no sources' build tooling
    for name in ("package/dist/index.js", "package/dist/index.d.ts",
                 "package/proto/speakerswitch/v1/speakerswitch.proto"):
        assert name in listing, listing
    app = work / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "media-server", "private": true}\n')
    r = run([NPM, "install", "--no-audit", "--no-fund", str(tarball)], app, 600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (app / "node_modules" / "@grpc" / "grpc-js").is_dir()  # its own dependencies
    assert not (app / "node_modules" / "typescript").exists()     # not its build tools
    (app / "media_server.js").write_text(SCRIPT)
    (app / "pcm.js").write_text(PCM)
    (app / "live.js").write_text(LIVE)
    (app / "restart.js").write_text(RESTART)
    (app / "watch.js").write_text(WATCH)
    (app / "watch_cut.js").write_text(WATCH_CUT)
    (app / "away.js").write_text(AWAY)
    (app / "tls.js").write_text(TLS)
    (app / "broken_listener.js").write_text(BROKEN_LISTENER)
    return app


def test_the_installed_package_sends_one_request_per_tick_with_the_same_decisions(
        installed, tmp_path):
    by_room = scripts(2)
    n_ticks = len(by_room["room-0"])
    with ServerThread(test_config()) as other:  # the same room ids on a server of its own
        expected = decisions_the_existing_way(other, by_room)
    ticks = [[[room, ticks[i].timestamp_ms,
               [[a.participant_id, a.level.level, a.level.voice == pb.VOICE_ACTIVITY_PRESENT]
                for a in ticks[i].audio]] for room, ticks in by_room.items()]
             for i in range(n_ticks)]
    (tmp_path / "ticks.json").write_text(json.dumps(ticks))
    with ServerThread(test_config()) as server:
        batches0 = served(server, "speakerswitch_batches_total")
        ticks0 = served(server, "speakerswitch_ticks_total")
        r = run([NODE, "media_server.js", server.target, str(tmp_path / "ticks.json")],
                installed, 120)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        # what the server itself processed: one request per tick, carrying both rooms
        assert served(server, "speakerswitch_batches_total") - batches0 == n_ticks
        assert served(server, "speakerswitch_ticks_total") - ticks0 == n_ticks * len(by_room)
        states = {room: server.call(server.running.registry.room_state, room, "")
                  for room in by_room}
    assert got["stats"]["requests"] == got["stats"]["responses"] == n_ticks
    for room in by_room:
        mine = [e for e in got["events"] if e["room_id"] == room]
        want = expected[room]
        # every decision, in order, at the same media time with the same sequence
        assert [(e["event"], e["timestamp_ms"], e["sequence"]) for e in mine] == \
            [(e.WhichOneof("event"), e.timestamp_ms, e.sequence) for e in want], room
        switches = [(e["timestamp_ms"], e["switch"]["speaker_id"],
                     e["switch"]["previous_speaker_id"], e["switch"]["reason"])
                    for e in mine if e["event"] == "switch"]
        assert switches and switches == [
            (e.timestamp_ms, e.switch.speaker_id, e.switch.previous_speaker_id,
             pb.SwitchReason.Name(e.switch.reason)) for e in want if e.HasField("switch")], room
        assert [s for r, s in got["switches"] if r == room] == [s[1] for s in switches]
        view, state = got["views"][room], states[room]
        assert (view["speakerId"], view["sequence"]) == (state.speaker_id, state.sequence)
        for p in state.participants:
            assert view["participants"][p.participant_id]["isSpeaking"] == p.speaking
        stops = {p: [e["timestamp_ms"] for e in mine if e["event"] == "speaking_changed"
                     and e["speaking_changed"]["participant_id"] == p
                     and not e["speaking_changed"]["speaking"]] for p in ("a", "b", "c")}
        for p, times in stops.items():
            if times and not view["participants"][p]["isSpeaking"]:
                assert view["participants"][p]["lastSpokeAt"] == times[-1], (room, p)


def test_in_real_time_with_a_token_the_ticks_carry_both_rooms(installed, tmp_path_factory):
    n_ticks = 60
    with token_server(tmp_path_factory) as server:
        batches0 = served(server, "speakerswitch_batches_total")
        ticks0 = served(server, "speakerswitch_ticks_total")
        r = run([NODE, "live.js", server.target, token(), str(n_ticks)], installed, 120)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["error"] is None, got
        stats = got["stats"]
        assert stats["requests"] == stats["responses"] > 0
        assert served(server, "speakerswitch_batches_total") - batches0 == stats["requests"]
        # every room's tick arrived once; requests follow the timer's ticks, not the rooms
        assert served(server, "speakerswitch_ticks_total") - ticks0 == n_ticks * 2
        assert stats["requests"] <= n_ticks + 2, stats
        assert got["speakers"] == ["a", "a"]
        for room in ("live-0", "live-1"):
            assert server.call(server.running.registry.room_state, room, "acme").speaker_id == "a"

        # a token signed with another key: an 'error' event with the status, and no decisions
        bad = create_token(b"another-secret-that-is-long-enough-for-hs256", "acme",
                           ["publish"], 600)
        r = run([NODE, "live.js", server.target, bad, str(n_ticks)], installed, 120)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["error"]["code"] == 16, got  # UNAUTHENTICATED
        assert "token" in got["error"]["details"], got
        assert got["speakers"] == ["", ""] and got["stats"]["responses"] == 0, got


def test_the_docs_snippet_prints_what_it_says(installed):
    doc = (ROOT / "docs" / "clients.md").read_text()
    blocks = [b for b in re.findall(r"```js\n(.*?)```", doc, re.S) if MAKE_ADDRESS in b]
    assert len(blocks) == 1, "docs/clients.md: the Node snippet against make run's address"
    code, marker, shown = blocks[0].partition("// prints:\n")
    assert marker, "say what the Node snippet prints under '// prints:'"
    expected = [line.strip()[2:].strip() for line in shown.splitlines() if line.strip()]
    assert expected
    with ServerThread(test_config()) as server:
        (installed / "snippet.js").write_text(code.replace(MAKE_ADDRESS, server.target))
        r = run([NODE, "snippet.js"], installed, 60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected, r.stdout


def test_a_restarted_server_is_reconnected_to_and_nothing_comes_twice(installed):
    port = free_port()
    servers = [ServerThread(test_config(port=port)).__enter__()]
    node = subprocess.Popen([NODE, "restart.js", f"127.0.0.1:{port}", "150"], cwd=installed,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout.readline().strip() == "at 40"
        servers[0].__exit__(None, None, None)  # the server goes away, its rooms with it...
        node.stdin.write("go\n")
        node.stdin.flush()
        assert node.stdout.readline().strip() == "at 60"
        servers.append(ServerThread(test_config(port=port)).__enter__())  # ... a new one
        node.stdin.write("go\n")
        node.stdin.flush()
        got = json.loads(node.stdout.readline())
        assert node.wait(30) == 0
        second = servers[1]
        state = second.call(second.running.registry.room_state, "r", "")
        answered_by_second = served(second, "speakerswitch_batches_total")
    finally:
        node.kill()
        servers[-1].__exit__(None, None, None)
    stats, seen = got["stats"], got["seen"]
    assert got["error"] is None, got
    assert stats["reconnects"] >= 1, stats
    assert stats["requests"] == stats["responses"] and stats["rejections"] == 0, stats
    # the first server's events, then the new room's on the second: each numbered 1, 2,
    # 3 ... without a repeat; the second's are all of its room's events
    restart = next(k for k in range(1, len(seen)) if seen[k][0] <= seen[k - 1][0])
    first, then = [e[0] for e in seen[:restart]], [e[0] for e in seen[restart:]]
    assert contiguous(first) and contiguous(then), (first, then)
    assert then[-1] == state.sequence
    shown = [(t, who) for _, t, kind, who in seen[restart:] if kind == "switch"]
    assert [who for _, who in shown] == ["a", "b"] and shown[1][0] > 1800, shown
    assert state.speaker_id == got["speaker"] == "b"
    assert answered_by_second <= stats["responses"]


CONSUMER = """
import { SpeakerSwitchClient, Participant, Switch, shardOf } from 'speakerswitch-client';
const ss = new SpeakerSwitchClient('127.0.0.1:1', { autoFlush: false, token: () => 't', shards: 4 });
ss.on('switch', (room, sw: Switch) => { const who: string = sw.speaker_id; console.log(room.roomId, who); });
ss.on('speaking', (room, p: Participant) => {
  const level: number = p.audioLevel; const at: number | null = p.lastSpokeAt;
  console.log(level, at, p.isSpeaking);
});
const sent: boolean = ss.pushLevel('r', 'a', LEVEL, true, 0);
const pcm: boolean = ss.pushPcm('r', 'b', new Uint8Array(640), 16000, 0);
ss.configure('r', { profile: 'podcast', hold_ms: 800 });
const shard: number = shardOf('r', 4);
console.log(sent, pcm, shard, ss.stats().streams);
"""


def test_its_types_check_a_typescript_user_and_refuse_a_wrong_call(installed, tmp_path_factory):
    src = packed(tmp_path_factory).parent  # its build tools: tsc and @types/node
    (installed / "user.ts").write_text(CONSUMER.replace("LEVEL", "25"))
    (installed / "wrong.ts").write_text("export {};\n" + CONSUMER.replace("LEVEL", "'25'"))
    # one compiler run for both (the compiler is slow to start): errors in wrong.ts only
    r = run([str(src / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict",
             "--typeRoots", str(src / "node_modules" / "@types"), "--types", "node",
             "user.ts", "wrong.ts"], installed, 120)
    errors = [line for line in r.stdout.splitlines() if ": error TS" in line]
    assert r.returncode != 0 and errors, r.stdout + r.stderr
    # a string level, on line 10 of wrong.ts
    assert all(e.startswith("wrong.ts(10,") and "'number'" in e for e in errors), r.stdout


# What the decisions and queries carry is typed by interfaces generated from the .proto at
# build time (proto-loader-gen-types), not written by hand: a field the .proto has checks,
# one it lacks, or the wrong type for one, is refused.
TYPED = """
import { SpeakerSwitchClient, RoomEvent, RoomState, RoomSummary } from 'speakerswitch-client';
const ss = new SpeakerSwitchClient('127.0.0.1:1', { autoFlush: false });
ss.on('decision', (e: RoomEvent) => { const kind: string | undefined = e.event; console.log(kind); });
ss.on('switch', (room, sw) => { const onset: number = sw.speech_onset_ms; console.log(onset); });
(async () => {
  for await (const r of ss.listRooms()) { const n: number = r.participants; console.log(n); }
  const state: RoomState = await ss.getRoom('r');
  const at: number | undefined = state.participants[0].last_spoke_at_ms;
  const summary: RoomSummary | null = null;
  console.log(at, summary, FIELD);
})();
"""


def test_the_messages_are_typed_by_interfaces_generated_from_the_proto(installed,
                                                                       tmp_path_factory):
    tarball = packed(tmp_path_factory)
    listing = set(run(["tar", "tzf", str(tarball)], tarball.parent).stdout.split())
    proto = (ROOT / "proto" / "speakerswitch" / "v1" / "speakerswitch.proto").read_text()
    names = re.findall(r"^(?:message|enum) (\w+)", proto, re.M)
    assert len(names) > 20  # read the contract
    missing = [n for n in names
               if f"package/dist/generated/speakerswitch/v1/{n}.d.ts" not in listing]
    assert missing == []
    src = tarball.parent  # its build tools: tsc and @types/node
    (installed / "typed.ts").write_text(TYPED.replace("FIELD", "state.sequence"))
    (installed / "typed_wrong.ts").write_text(
        "export {};\n" + TYPED.replace("FIELD", "state.no_such_field"))
    r = run([str(src / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict",
             "--typeRoots", str(src / "node_modules" / "@types"), "--types", "node",
             "typed.ts", "typed_wrong.ts"], installed, 120)
    errors = [line for line in r.stdout.splitlines() if ": error TS" in line]
    assert r.returncode != 0 and errors, r.stdout + r.stderr
    # only the field the .proto lacks, on line 12 of typed_wrong.ts
    assert all(e.startswith("typed_wrong.ts(12,") and "no_such_field" in e
               for e in errors), r.stdout


def test_the_generated_types_use_the_options_the_client_decodes_with():
    """package.json's proto-loader-gen-types flags and loadApi's loadSync options agree:
    the types describe the objects the client really hands out."""
    package = json.loads((ROOT / "clients" / "node" / "package.json").read_text())
    build = package["scripts"]["build"]
    flags = set(re.search(r"proto-loader-gen-types (.*?) --outDir", build)[1].split())
    options = re.search(r"protoLoader\.loadSync\(PROTO_PATH, \{(.*?)\}",
                        (ROOT / "clients" / "node" / "src" / "index.ts").read_text())[1]
    as_flags = set()
    for option in options.split(","):
        key, value = (s.strip() for s in option.split(":"))
        as_flags.add(f"--{key}" if value == "true" else f"--{key}={value}")
    assert as_flags == flags - {"--grpcLib=@grpc/grpc-js"}

def test_watch_follows_a_room_to_its_close_and_list_rooms_pages(installed):
    with ServerThread(test_config()) as server:
        r = run([NODE, "watch.js", server.target], installed, 120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    watched, pushed = got["watched"], got["pushed"]
    # a snapshot first, then every event after it, as the pushing client got them, in
    # order and once each; then the room's close
    assert watched[0][1] == "snapshot", watched[:2]
    after_snapshot = [e for e in pushed if e[0] > watched[0][0]]
    assert any(e[1] == "switch" for e in after_snapshot), pushed
    assert watched[1:-1] == after_snapshot
    assert watched[-1][1] == "room_closed" and watched[-1][0] == got["closedAt"], watched[-1]
    assert got["before"] == ["w-0", "w-1"] and got["after"] == ["w-1"], got


def test_watch_resumes_after_a_network_cut_without_gaps_or_repeats(installed):
    loop = asyncio.new_event_loop()  # the relay's, in a thread of its own
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    with ServerThread(test_config()) as server:
        proxy = Proxy(int(server.target.rsplit(":", 1)[1]))
        on_loop(proxy.start())
        node = subprocess.Popen([NODE, "watch_cut.js", server.target,
                                 f"127.0.0.1:{proxy.port}"], cwd=installed,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            for step, action in (("at 50", proxy.cut), ("at 100", proxy.start)):
                assert node.stdout.readline().strip() == step
                on_loop(action())
                node.stdin.write("go\n")
                node.stdin.flush()
            got = json.loads(node.stdout.readline())
            assert node.wait(30) == 0
        finally:
            node.kill()
            on_loop(proxy.cut())
            loop.call_soon_threadsafe(loop.stop)
    watched, published = got["watched"], got["published"]
    assert proxy.connections >= 2  # the watcher did reconnect
    assert published[got["cutAt"]:], "decisions while the watch was cut"
    assert any(e[1] == "switch" for e in published)
    assert watched[0][1] == "snapshot"
    start = watched[0][0]
    after = [e[0] for e in watched[1:]]
    assert after == list(range(start + 1, start + 1 + len(after))), after
    # exactly the publisher's events, those of the cut included
    assert watched[1:] == [e for e in published if e[0] > start]


def test_while_the_server_is_away_memory_stays_bounded_and_then_it_goes_on(installed):
    port = free_port()
    node = subprocess.Popen([NODE, "away.js", f"127.0.0.1:{port}"], cwd=installed,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = node.stdout.readline()
        assert line.startswith("away "), line
        away = json.loads(line[5:])
        with ServerThread(test_config(port=port)) as server:
            node.stdin.write("go\n")
            node.stdin.flush()
            got = json.loads(node.stdout.readline())
            assert node.wait(30) == 0
            state = server.call(server.running.registry.room_state, "b", "")
    finally:
        node.kill()
    # 2 s of pushes with nobody answering: what waits is bounded, the rest refused
    assert away["pendingPackets"] <= 60 and away["inFlight"] <= 2, away
    assert away["refusedPackets"] > 0 and away["responses"] == 0, away
    assert away["reconnects"] >= 1, away
    # the server came: what waited is answered, and the room goes on
    assert got["error"] is None, got
    assert got["stats"]["requests"] == got["stats"]["responses"] > 0, got
    assert state is not None and state.speaker_id == got["speaker"] == "a"


def test_mutual_tls_with_a_token(installed, pki, tmp_path_factory):  # noqa: F811
    with token_server(tmp_path_factory, tls_cert_file=str(pki / "server.pem"),
                      tls_key_file=str(pki / "server.key"),
                      tls_client_ca_file=str(pki / "ca.pem")) as server:
        r = run([NODE, "tls.js", server.target, str(pki), token()], installed, 60)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["speaker"] == "a" and got["listed"] == ["tls"] and got["asked"] >= 1, got
        assert got["stats"]["responses"] == 60, got
        # a client certificate from another CA is turned away
        # a client certificate from another CA is turned away at every attempt (the client
        # keeps trying: a handshake failure is UNAVAILABLE), and nothing is answered
        (installed / "rogue.js").write_text(ROGUE)
        r = run([NODE, "rogue.js", server.target, str(pki), token()], installed, 60)
        assert r.returncode == 0, r.stderr
        rogue = json.loads(r.stdout)
        assert rogue["responses"] == 0 and rogue["requests"] == 2, rogue
        assert rogue["reconnects"] >= 1, rogue


def test_a_failing_listener_is_reported_and_the_decisions_go_on(installed):
    with ServerThread(test_config()) as server:
        r = run([NODE, "broken_listener.js", server.target], installed, 60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["speaker"] == "b" and got["stats"]["responses"] == 150, got
    assert r.stderr.count("a 'switch' listener failed") == 2, r.stderr  # to a, then to b
    assert r.stderr.count("the application's bug") == 2, r.stderr


def as_json_ticks(by_room: dict[str, list[pb.RoomTick]]) -> list:
    """The ticks as SCRIPT reads them: per tick, per room, its packets."""
    n_ticks = len(next(iter(by_room.values())))
    return [[[room, ticks[i].timestamp_ms,
              [[a.participant_id, a.level.level, a.level.voice == pb.VOICE_ACTIVITY_PRESENT]
               for a in ticks[i].audio]] for room, ticks in by_room.items()]
            for i in range(n_ticks)]


def test_sharded_a_flush_goes_to_every_shard_at_once_with_the_same_decisions(installed,
                                                                            tmp_path):
    from service.client import shard_of
    by_room = scripts(6)
    n_ticks = len(by_room["room-0"])
    used = {shard_of(room, 4) for room in by_room}
    assert len(used) > 1
    with ServerThread(test_config()) as other:
        expected = decisions_the_existing_way(other, by_room)
    (tmp_path / "ticks.json").write_text(json.dumps(as_json_ticks(by_room)))
    with ServerThread(test_config()) as server:
        batches0 = served(server, "speakerswitch_batches_total")
        r = run([NODE, "media_server.js", server.target, str(tmp_path / "ticks.json"), "4"],
                installed, 120)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        # a request per shard that has rooms, per tick
        assert served(server, "speakerswitch_batches_total") - batches0 == n_ticks * len(used)
    stats = got["stats"]
    assert stats["streams"] == len(used) and stats["reconnects"] == 0, stats
    assert stats["requests"] == stats["responses"] == n_ticks * len(used), stats
    # flush() resolved with every shard's request out and none answered yet: all at once
    assert got["queuedAtOnce"] == len(used), got["queuedAtOnce"]
    for room in by_room:
        mine = [(e["event"], e["timestamp_ms"], e["sequence"]) for e in got["events"]
                if e["room_id"] == room]
        assert mine == [(e.WhichOneof("event"), e.timestamp_ms, e.sequence)
                        for e in expected[room]], room


class StreamRecorder:
    """A stand-in server that answers every request empty and records, per stream, its
    shard header and the rooms of its ticks."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        self.streams: list[tuple[str | None, list[str]]] = []
        self.server = grpc.server(ThreadPoolExecutor(8))
        handler = grpc.stream_stream_rpc_method_handler(
            self.stream, request_deserializer=pb.StreamRequest.FromString,
            response_serializer=pb.StreamResponse.SerializeToString)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "speakerswitch.v1.SpeakerSwitch", {"Stream": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stream(self, requests, context):
        rooms: list[str] = []
        self.streams.append((dict(context.invocation_metadata()).get(
            "x-speakerswitch-shard"), rooms))
        for request in requests:
            rooms.extend(t.room_id for t in request.ticks)
            yield pb.StreamResponse(batch_id=request.batch_id)


def test_sharded_each_stream_carries_its_shard_header_and_only_its_rooms(installed,
                                                                         tmp_path):
    """The Node client's shard of a room is the Python client's (CRC-32 of the UTF-8 id),
    so a proxy sends a room to one replica whichever language pushed it."""
    from service.client import shard_of
    rooms = ["room-0", "room-1", "salle-été", "会议室", "r", "a-much-longer-room-id-42"]
    ticks = [[[room, 20 * i, [["a", 30, True]]] for room in rooms] for i in range(5)]
    (tmp_path / "ticks.json").write_text(json.dumps(ticks))
    recorder = StreamRecorder()
    try:
        r = run([NODE, "media_server.js", f"127.0.0.1:{recorder.port}",
                 str(tmp_path / "ticks.json"), "4"], installed, 60)
    finally:
        recorder.server.stop(0)
    assert r.returncode == 0, r.stderr
    headers = [shard for shard, _ in recorder.streams]
    assert sorted(headers) == sorted(str(s) for s in {shard_of(room, 4) for room in rooms})
    for shard, on_it in recorder.streams:
        assert on_it and {shard_of(room, 4) for room in on_it} == {int(shard)}, (shard, on_it)
        assert len(on_it) == 5 * len(set(on_it))  # every tick of its rooms, on this stream


def test_pcm_pushed_per_packet_with_a_room_config_decides_as_sent_the_existing_way(
        installed, tmp_path):
    import base64

    import numpy as np

    from service.client import Client
    from service.tools import sample
    tracks, _ = sample.conversation(rate=16000)
    frame, n_ticks = 320, 300  # 20 ms at 16 kHz
    pcm = {p: (np.clip(x[:n_ticks * frame], -1, 1) * 32767).astype("<i2").tobytes()
           for p, x in tracks.items()}
    config = {"profile": "debate", "hold_ms": 200}

    def existing_way(room_config: dict | None) -> list:
        with ServerThread(test_config()) as srv, Client(srv.target) as c, c.session() as s:
            out = []
            for i in range(n_ticks):
                tick = pb.RoomTick(room_id="pcm", timestamp_ms=i * 20, duration_ms=20)
                if i == 0 and room_config:
                    tick.config.CopyFrom(pb.RoomConfig(**room_config))
                for p in tracks:
                    tick.audio.add(participant_id=p, pcm=pb.PcmFrame(
                        samples=pcm[p][i * frame * 2:(i + 1) * frame * 2], sample_rate_hz=16000))
                out.extend([e.sequence, e.WhichOneof("event"), e.timestamp_ms,
                            e.switch.speaker_id if e.HasField("switch") else None]
                           for e in s.send_ticks(tick).events)
            return out

    expected = existing_way(config)
    assert any(e[1] == "switch" for e in expected)
    assert expected != existing_way(None)  # the configuration matters to these decisions
    (tmp_path / "tracks.json").write_text(json.dumps(
        {p: base64.b64encode(b).decode() for p, b in pcm.items()}))
    with ServerThread(test_config()) as server:
        r = run([NODE, "pcm.js", server.target, str(tmp_path / "tracks.json"),
                 json.dumps(config)], installed, 120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["out"] == expected
    assert got["stats"]["requests"] == got["stats"]["responses"] == n_ticks, got["stats"]
    assert "RangeError" in got["wrong"] and "samples: 100 bytes, not 640" in got["wrong"]
