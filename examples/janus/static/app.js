"use strict";
// The demo page: publish camera+mic to Janus's VideoRoom, show in the main tile the feed
// that speakerswitch chose (its decisions arrive as SSE from the HTTP API: no switching logic
// here), thumbnails = speakerswitch's forwarding set, and subscribe only to those feeds.

const params = new URLSearchParams(location.search);
const cfg = { room: 1234, roomId: "janus-1234", janus: `${location.origin}/janus` };
const state = {
  me: "", myId: 0, camera: true, pinned: "",
  shown: "", forwarding: [],      // from speakerswitch
  feeds: new Map(),               // display name -> Janus publisher id
  subs: new Map(),                // display name -> {handle, stream}
  shownHistory: [],               // every main-tile participant, in order (tests read it)
  shownAt: [], captureAt: 0,      // [Date.now(), participant] per change; when the mic started
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
  // a participant is in speakerswitch's room from its first forwarded audio on: until then
  // (a second or so after the mapping) the event is a 404, so try again for a few seconds
  let r;
  for (let i = 0; i < 20; i++) {
    r = await post(`/api/rooms/${encodeURIComponent(cfg.roomId)}/events`, { type, participant });
    if (r.status !== 404) break;
    await new Promise((ok) => setTimeout(ok, 250));
  }
  return r;
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
    pub.createOffer({ tracks: [{ type: "audio", capture: true, recv: false },
                               { type: "video", capture: true, recv: false }],
      success: (offer) => pub.send({ message: { request: "configure", audio: true, video: true },
                                     jsep: offer }),
      error: (e) => status("getUserMedia/offer: " + JSON.stringify(e), "error") });
  }
  if (msg.configured === "ok" && !state.published) {
    state.published = true;
    post("/bridge/publish", { participant: state.me, publisher_id: state.myId, audio_mid: "0" })
      .then(() => { status("joined as " + state.me);
                    state.mapped = true;
                    if (!state.camera) sendEvent("VIDEO_OFF", state.me);
                    document.getElementById("camera").disabled = false;
                    openStream(); });
  }
  for (const p of msg.publishers || []) state.feeds.set(p.display, p.id);
  const gone = msg.leaving || msg.unpublished;
  if (gone) for (const [name, id] of state.feeds) if (id === gone) state.feeds.delete(name);
  if (jsep) pub.handleRemoteJsep({ jsep });
  render();
}

async function toggleCamera() {
  state.camera = !state.camera;
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
      if (e.switch.reason === "PINNED") state.pinned = e.switch.speaker_id;
      if (e.switch.reason === "UNPINNED") state.pinned = "";
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

function subscribe(name) {
  const sub = { handle: null, stream: new MediaStream() };
  state.subs.set(name, sub);
  janus.attach({ plugin: "janus.plugin.videoroom", success: (h) => {
    sub.handle = h;
    h.send({ message: { request: "join", ptype: "subscriber", room: cfg.room,
                        streams: [{ feed: state.feeds.get(name) }] } });
  }, onmessage: (msg, jsep) => {
    if (!jsep) return;
    sub.handle.createAnswer({ jsep, tracks: [{ type: "data" }],
      success: (answer) => sub.handle.send({ message: { request: "start" }, jsep: answer }) });
  }, onremotetrack: (track, mid, on) => {
    if (on) sub.stream.addTrack(track); else sub.stream.removeTrack(track);
    render();
  }});
}

function unsubscribe(name) {
  const sub = state.subs.get(name);
  state.subs.delete(name);
  if (sub && sub.handle) sub.handle.detach();
}

// ------------------------------------------------------------------ drawing

function render() {
  if (!janus) return;
  const want = wanted();
  for (const n of want) if (!state.subs.has(n)) subscribe(n);
  for (const n of [...state.subs.keys()]) if (!want.includes(n)) unsubscribe(n);

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
    }
  }
  document.getElementById("unpin").disabled = !state.pinned;
  const thumbs = document.getElementById("thumbs");
  const nodes = state.forwarding.filter((n) => n !== state.me).map((n) => {
    let node = thumbs.querySelector(`[data-participant="${CSS.escape(n)}"]`);
    if (!node) {
      node = document.createElement("div");
      node.className = "thumb";
      node.dataset.participant = n;
      node.innerHTML = '<video autoplay playsinline></video><span class="label"></span>';
      node.querySelector(".label").textContent = n;
      node.onclick = () => sendEvent("PIN", n);
    }
    const sub = state.subs.get(n);
    const v = node.querySelector("video");
    if (sub && v.srcObject !== sub.stream) v.srcObject = sub.stream;   // plays its audio too
    node.classList.toggle("pinned", n === state.pinned);
    return node;
  });
  thumbs.replaceChildren(...nodes);
}

document.getElementById("join").onclick = join;
document.getElementById("camera").onclick = toggleCamera;
document.getElementById("unpin").onclick = () => sendEvent("UNPIN", "");
window.addEventListener("beforeunload", () => {
  navigator.sendBeacon("/bridge/leave", JSON.stringify({ participant: state.me }));
});
if (params.get("name")) {
  document.getElementById("name").value = params.get("name");
  join();
}
