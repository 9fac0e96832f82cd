"use strict";
// The demo page: publish camera+mic to Janus's VideoRoom, show in the main tile the feed
// that speakerswitch chose (its decisions arrive as SSE from the HTTP API: no switching logic
// here), thumbnails = speakerswitch's forwarding set. Video is subscribed only for those
// feeds; audio for every feed (a few tens of kbit/s each, and whoever starts talking must be
// heard before speakerswitch brings their camera in).

const params = new URLSearchParams(location.search);
const cfg = { room: 1234, roomId: "janus-1234", janus: `${location.origin}/janus` };
const state = {
  me: "", myId: 0, pinned: "",
  camera: params.get("camera") !== "off",   // ?camera=off joins with the camera off
  shown: "", forwarding: [],      // from speakerswitch
  feeds: new Map(),               // display name -> {id, audio, video} (Janus id, mids)
  subs: new Map(),                // display name -> {handle, stream, feed}: its video
  audioSubs: new Map(),           // the same for its audio, every feed
  shownHistory: [],               // every main-tile participant, in order (tests read it)
  shownAt: [], captureAt: 0,      // [Date.now(), participant] per change; when the mic started
  videoSubsAt: [],                // [Date.now(), video subscriptions, feeds] per change
  sent: [],                       // [Date.now(), type, participant, HTTP status] per event
  cameraAt: 0,                    // Date.now() of the last camera click
  playingAt: [],                  // [Date.now(), participant]: the main tile's first frame
};
window.demo = state;
let janus = null, pub = null;

function status(text, s) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.dataset.state = s || "live";
}

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body) });
  if (!r.ok) console.warn(url, r.status, await r.text());
  return r;
}

async function sendEvent(type, participant) {   // camera on/off and pin reach speakerswitch
  // everyone is in speakerswitch's room from the bridge's MapRtpSource on (before the page
  // sends anything), so an event is answered at once, no retry
  const r = await post(`/api/rooms/${encodeURIComponent(cfg.roomId)}/events`,
                       { type, participant });
  state.sent.push([Date.now(), type, participant, r.status]);
  return r;
}

async function pin(type, participant) {
  // pinning the one already shown switches nothing, so no PINNED reaches the stream: the
  // accepted request is what says the pin is on (or off)
  const r = await sendEvent(type, participant);
  if (r.ok) {
    state.pinned = participant;
    render();
  }
}

// ------------------------------------------------------------------ publishing

function join() {
  state.me = document.getElementById("name").value.trim();
  if (!state.me) return;
  document.getElementById("join").disabled = true;
  Janus.init({ debug: false, callback: () => {
    janus = new Janus({ server: params.get("janus") || cfg.janus, success: attach,
                        error: (e) => status("Janus: " + e, "error") });
  }});
}

function attach() {
  janus.attach({ plugin: "janus.plugin.videoroom", success: (h) => {
    pub = h;
    pub.send({ message: { request: "join", ptype: "publisher", room: cfg.room, display: state.me } });
  }, onmessage: onPublisherMessage,
  onlocaltrack: (track, on) => {
    if (track.kind === "audio" && on && !state.captureAt) state.captureAt = Date.now();
    if (track.kind !== "video" || !on) return;
    document.getElementById("self").srcObject = new MediaStream([track]);
  }, error: (e) => status("attach: " + e, "error") });
}

function onPublisherMessage(msg, jsep) {
  if (msg.videoroom === "joined") {
    state.myId = msg.id;
    // ?video=low: 320x240 at 15 fps (three browsers on one small machine, in the test)
    const video = params.get("video") === "low" ? { width: 320, height: 240, frameRate: 15 }
                                                 : true;
    pub.createOffer({ tracks: [{ type: "audio", capture: true, recv: false },
                               { type: "video", capture: video, recv: false }],
      success: (offer) => pub.send({ message: { request: "configure", audio: true, video: true },
                                     jsep: offer }),
      error: (e) => status("getUserMedia/offer: " + JSON.stringify(e), "error") });
  }
  if (msg.configured === "ok" && !state.published) {
    state.published = true;
    post("/bridge/publish", { participant: state.me, publisher_id: state.myId, audio_mid: "0" })
      .then(() => { status("joined as " + state.me);
                    state.mapped = true;
                    if (!state.camera) {   // joined with the camera off
                      pub.muteVideo();
                      sendEvent("VIDEO_OFF", state.me).then((r) => { state.cameraAck = r.status; });
                    }
                    document.getElementById("camera").textContent =
                      state.camera ? "Camera off" : "Camera on";
                    document.getElementById("camera").disabled = false;
                    openStream(); });
  }
  for (const p of msg.publishers || []) {
    const mid = (kind, dflt) => ((p.streams || []).find((s) => s.type === kind) || { mid: dflt }).mid;
    state.feeds.set(p.display, { id: p.id, audio: mid("audio", "0"), video: mid("video", "1") });
  }
  const gone = msg.leaving || msg.unpublished;
  if (gone) for (const [name, f] of state.feeds) if (f.id === gone) state.feeds.delete(name);
  if (jsep) pub.handleRemoteJsep({ jsep });
  render();
}

async function toggleCamera() {
  state.camera = !state.camera;
  state.cameraAt = Date.now();
  // mute the sender's track; Janus keeps the feed, speakerswitch is told by the event
  (state.camera ? pub.unmuteVideo : pub.muteVideo).call(pub);
  if (state.mapped) {   // before that, the mapping's .then above says it
    const r = await sendEvent(state.camera ? "VIDEO_ON" : "VIDEO_OFF", state.me);
    state.cameraAck = r.status;
  }
  document.getElementById("camera").textContent = state.camera ? "Camera off" : "Camera on";
}

// ------------------------------------------------------------------ decisions (SSE)

function openStream() {
  const src = new EventSource(`/api/rooms/${encodeURIComponent(cfg.roomId)}/events?wait=1`);
  src.onmessage = (m) => {
    const e = JSON.parse(m.data);
    if (e.kind === "snapshot") {
      state.shown = e.snapshot.speaker_id;
      state.forwarding = e.snapshot.forwarding;
      state.pinned = e.snapshot.pinned_id;
    } else if (e.kind === "switch") {
      state.shown = e.switch.speaker_id;
      if (e.switch.reason === "SWITCH_REASON_PINNED") state.pinned = e.switch.speaker_id;
      if (e.switch.reason === "SWITCH_REASON_UNPINNED") state.pinned = "";
    } else if (e.kind === "forwarding") {
      state.forwarding = e.forwarding.participant_ids;
    } else return;
    render();
  };
}

// ------------------------------------------------------------------ subscriptions

function wanted() {   // only the video we show: the main tile and the forwarding set
  const names = new Set(state.forwarding);
  if (state.shown) names.add(state.shown);
  names.delete(state.me);
  return [...names].filter((n) => state.feeds.has(n));
}

function subscribe(subs, name, kind) {   // one handle per feed and kind: its own PeerConnection
  const feed = state.feeds.get(name);
  const sub = { handle: null, stream: new MediaStream(), feed: feed.id };
  subs.set(name, sub);
  janus.attach({ plugin: "janus.plugin.videoroom", success: (h) => {
    sub.handle = h;
    if (subs.get(name) !== sub) { h.detach(); return; }   // unsubscribed meanwhile
    h.send({ message: { request: "join", ptype: "subscriber", room: cfg.room,
                        streams: [{ feed: feed.id, mid: feed[kind] }] } });
  }, onmessage: (msg, jsep) => {
    if (!jsep) return;
    sub.handle.createAnswer({ jsep, tracks: [{ type: "data" }],
      success: (answer) => sub.handle.send({ message: { request: "start" }, jsep: answer }) });
  }, onremotetrack: (track, mid, on) => {
    if (on) sub.stream.addTrack(track); else sub.stream.removeTrack(track);
    render();
  }});
}

function unsubscribe(subs, name) {
  const sub = subs.get(name);
  subs.delete(name);
  if (sub && sub.handle) sub.handle.detach();
  const audio = document.querySelector(`#sound audio[data-participant="${CSS.escape(name)}"]`);
  if (subs === state.audioSubs && audio) audio.remove();
}

function reconcile(subs, want, kind) {   // subscribe to `want`, and to nothing else
  for (const [n, sub] of [...subs]) {
    const feed = state.feeds.get(n);
    if (!want.includes(n) || !feed || feed.id !== sub.feed) unsubscribe(subs, n);
  }
  for (const n of want) if (!subs.has(n)) subscribe(subs, n, kind);
}

// ------------------------------------------------------------------ drawing

function render() {
  if (!janus) return;
  const before = [...state.subs.keys()].sort().join();
  reconcile(state.subs, wanted(), "video");
  reconcile(state.audioSubs, [...state.feeds.keys()].filter((n) => n !== state.me), "audio");
  const now = [...state.subs.keys()].sort();
  if (now.join() !== before || !state.videoSubsAt.length) {
    state.videoSubsAt.push([Date.now(), now,
                            [...state.feeds.keys()].filter((n) => n !== state.me).sort()]);
  }
  const sound = document.getElementById("sound");
  for (const [n, sub] of state.audioSubs) {
    if (sound.querySelector(`audio[data-participant="${CSS.escape(n)}"]`)) continue;
    const el = document.createElement("audio");
    el.autoplay = true;
    el.dataset.participant = n;
    el.srcObject = sub.stream;
    sound.append(el);
  }

  const main = document.getElementById("main");
  const video = document.getElementById("main-video");
  const shown = state.shown === state.me ? null : state.subs.get(state.shown);
  const stream = state.shown === state.me ? document.getElementById("self").srcObject
                                          : shown && shown.stream;
  if (main.dataset.speaker !== state.shown || video.srcObject !== stream) {
    main.dataset.speaker = state.shown;
    video.srcObject = stream || null;
    document.getElementById("main-label").textContent = state.shown;
    if (state.shownHistory[state.shownHistory.length - 1] !== state.shown) {
      state.shownHistory.push(state.shown);
      state.shownAt.push([Date.now(), state.shown]);   // wall clock, for tests
      // and when the first frame of that stream is on screen (a new subscription's first
      // keyframe may take longer than the decision)
      const name = state.shown;
      if (name && video.requestVideoFrameCallback) {
        video.requestVideoFrameCallback(() => {
          if (main.dataset.speaker === name) state.playingAt.push([Date.now(), name]);
        });
      }
    }
  }
  document.getElementById("unpin").disabled = !state.pinned;
  const thumbs = document.getElementById("thumbs");
  // tiles keep their places (a newcomer goes last): the forwarding set's own order changes
  // with every new speaker, and tiles that jump about are hard to follow (or click)
  const keep = [...thumbs.children].map((el) => el.dataset.participant);
  const order = keep.filter((n) => state.forwarding.includes(n))
    .concat(state.forwarding.filter((n) => !keep.includes(n)));
  const nodes = order.filter((n) => n !== state.me).map((n) => {
    let node = thumbs.querySelector(`[data-participant="${CSS.escape(n)}"]`);
    if (!node) {
      node = document.createElement("div");
      node.className = "thumb";
      node.dataset.participant = n;
      node.innerHTML = '<video autoplay playsinline muted></video><span class="label"></span>';
      node.querySelector(".label").textContent = n;
      node.onclick = () => pin("PIN", n);
    }
    const sub = state.subs.get(n);
    const v = node.querySelector("video");
    if (sub && v.srcObject !== sub.stream) v.srcObject = sub.stream;
    node.classList.toggle("pinned", n === state.pinned);
    return node;
  });
  // only when the set or its order changed: a node taken out and put back under the pointer
  // can lose a click
  if (nodes.length !== thumbs.children.length || nodes.some((n, i) => thumbs.children[i] !== n)) {
    thumbs.replaceChildren(...nodes);
  }
}

document.getElementById("join").onclick = join;
document.getElementById("camera").onclick = toggleCamera;
document.getElementById("unpin").onclick = () => pin("UNPIN", "");
let leaving = false;
function leave() {   // the tab closes: the bridge unmaps us now, not after the silence grace
  if (leaving || !state.mapped) return;
  leaving = true;
  navigator.sendBeacon("/bridge/leave", JSON.stringify({ participant: state.me }));
}
window.addEventListener("pagehide", leave);
window.addEventListener("beforeunload", leave);
if (params.get("name")) {
  document.getElementById("name").value = params.get("name");
  join();
}
