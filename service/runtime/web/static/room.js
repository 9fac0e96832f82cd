// The room page. Everything it shows about the layout comes from the service: the main
// tile follows Switch events on the room's event stream (the same events, in the same
// sequence, as gRPC Watch); a click on a camera or pin button only sends the participant
// event and waits for the decision to come back on the stream.
import { api, colour, el, initials, seconds, session } from "./common.js";

const WINDOW_MS = 60000;      // the timeline's span of media time
const STATE_POLL_MS = 2000;   // roster and camera/mute flags (not in the event stream)
const REOPEN_MS = 1500;       // after the browser gave up on the stream (e.g. a 5xx)
const MAX_SWITCHES = 5;
const DB_FLOOR = -80;         // the bottom of level bars and timeline lines
const SYNC_TOLERANCE_S = 0.25;

const roomId = decodeURIComponent(location.pathname.slice("/rooms/".length));
const view = {
  seq: -1,            // last event sequence applied (-1: no snapshot yet)
  lastEventId: "",    // the stream's id of it ("<sequence>/<server boot id>")
  tMs: 0,             // the room's media time as far as we know
  shown: "", audio: "", pinned: "", presenter: "",
  forwarding: [], ranked: [],
  participants: new Map(),   // id -> {video, muted, speaking, level, screen_share}
  switches: [],              // newest first: {t, speaker, previous, reason}
  levels: new Map(),         // id -> [[t, dBov], ...]
  bands: [],                 // [[t, shown], ...] oldest first
  shownHistory: [],          // every main-tile speaker in order (for tests and debugging)
  gaps: 0,                   // sequence gaps seen (must stay 0)
  events: 0,
};
window.__viewer = view;
let dirty = true;

function participant(id) {
  if (!id) return null;
  let p = view.participants.get(id);
  if (!p) {
    p = { video: true, muted: false, speaking: false, level: null, screen_share: false };
    view.participants.set(id, p);
  }
  return p;
}

function setShown(t, id) {
  view.shown = id;
  view.bands.push([t, id]);
  if (view.shownHistory[view.shownHistory.length - 1] !== id) view.shownHistory.push(id);
}

function addLevel(t, id, dbov) {
  let series = view.levels.get(id);
  if (!series) view.levels.set(id, series = []);
  series.push([t, dbov]);
}

function prune() {
  const from = view.tMs - WINDOW_MS - 5000;
  for (const series of view.levels.values()) {
    let i = 0;
    while (i < series.length && series[i][0] < from) i++;
    series.splice(0, i);
  }
  let i = 0;
  while (i + 1 < view.bands.length && view.bands[i + 1][0] < from) i++;
  view.bands.splice(0, i);
}

function applySnapshot(e) {
  const s = e.snapshot;
  if (s.timestamp_ms < view.tMs) {   // a new room under the same id (e.g. a server restart)
    view.levels.clear();
    view.bands = [];
    view.switches = [];
  }
  view.seq = s.sequence;
  view.tMs = s.timestamp_ms;
  view.audio = s.audio_speaker_id;
  view.pinned = s.pinned_id;
  view.presenter = s.presenter_id;
  view.forwarding = s.forwarding;
  view.ranked = s.active_speakers;
  view.participants = new Map(s.participants.map((p) => [p.participant_id, {
    video: p.video, muted: p.muted, speaking: p.speaking, level: p.level_dbov,
    screen_share: p.screen_share,
  }]));
  setShown(s.timestamp_ms, s.speaker_id);
}

function apply(e) {
  view.events++;
  if (e.kind === "snapshot") {
    applySnapshot(e);
    dirty = true;
    return;
  }
  if (view.seq >= 0 && e.sequence !== view.seq + 1) view.gaps++;
  view.seq = e.sequence;
  view.tMs = Math.max(view.tMs, e.t_ms);
  const t = e.t_ms;
  switch (e.kind) {
    case "switch": {
      const s = e.switch;
      if (s.reason === "SWITCH_REASON_PINNED") view.pinned = s.speaker_id;
      if (s.reason === "SWITCH_REASON_UNPINNED") view.pinned = "";
      view.audio = s.audio_speaker_id;
      participant(s.speaker_id);
      // shown without the enum's prefix: "NEW_DOMINANT", "pinned" on the timeline
      view.switches.unshift({ t, speaker: s.speaker_id, previous: s.previous_speaker_id,
                              reason: s.reason.replace(/^SWITCH_REASON_/, "") });
      view.switches.length = Math.min(view.switches.length, 50);
      setShown(t, s.speaker_id);
      break;
    }
    case "floor_change": {
      view.audio = e.floor_change.speaker_id;
      const p = participant(e.floor_change.speaker_id);
      if (p) p.video = e.floor_change.has_video;
      break;
    }
    case "active_speakers":
      view.ranked = e.active_speakers.speakers;
      for (const r of view.ranked) {
        participant(r.participant_id).level = r.level_dbov;
        addLevel(t, r.participant_id, r.level_dbov);
      }
      break;
    case "speaking_changed":
      participant(e.speaking_changed.participant_id).speaking = e.speaking_changed.speaking;
      break;
    case "presentation":
      view.presenter = e.presentation.presenter_id;
      break;
    case "forwarding":
      view.forwarding = e.forwarding.participant_ids;
      break;
  }
  prune();
  dirty = true;
}

// ------------------------------------------------------------------ the event stream

let source = null;

function setStatus(state, text) {
  const s = document.getElementById("status");
  s.dataset.state = state;
  s.textContent = text;
}

function openStream() {
  // A new EventSource sends no Last-Event-ID: say where we are with ?after= instead (the
  // browser's own reconnects send the header, which the server prefers).
  const after = view.lastEventId ? `&after=${encodeURIComponent(view.lastEventId)}` : "";
  source = new EventSource(`/api/rooms/${encodeURIComponent(roomId)}/events?wait=1${after}`);
  source.onopen = () => setStatus("waiting", "waiting for the room…");
  source.onmessage = (m) => {
    if (document.getElementById("status").dataset.state !== "live") setStatus("live", "live");
    view.lastEventId = m.lastEventId;
    apply(JSON.parse(m.data));
  };
  source.addEventListener("reset", () => {   // the room was dropped: start over
    source.close();
    view.lastEventId = "";
    setStatus("waiting", "waiting for the room…");
    openStream();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {   // refused: check the sign-in, retry
      source.close();
      setStatus("reconnecting", "reconnecting…");
      setTimeout(async () => { await session(); openStream(); }, REOPEN_MS);
    } else {
      setStatus("reconnecting", "reconnecting…");       // the browser retries by itself
    }
  };
}

async function pollState() {
  if (view.seq < 0) return;   // the room does not exist yet (the stream waits for it)
  try {
    const s = await api(`/api/rooms/${encodeURIComponent(roomId)}`);
    view.tMs = Math.max(view.tMs, s.timestamp_ms);
    const seen = new Set();
    for (const p of s.participants) {
      seen.add(p.participant_id);
      const mine = participant(p.participant_id);
      mine.video = p.video;
      mine.muted = p.muted;
      mine.screen_share = p.screen_share;
      if (!view.ranked.some((r) => r.participant_id === p.participant_id)) mine.level = p.level_dbov;
    }
    if (s.sequence >= view.seq) {   // not older than what the stream has shown us
      for (const id of [...view.participants.keys()]) if (!seen.has(id)) view.participants.delete(id);
      view.pinned = s.pinned_id;
      view.presenter = s.presenter_id;
    }
    dirty = true;
  } catch (e) {
    if (e.status !== 404 && e.status !== 401) console.warn("room state:", e.message);
  }
}

// ------------------------------------------------------------------ actions

async function send(participantId, type) {
  try {
    await api(`/api/rooms/${encodeURIComponent(roomId)}/events`, {
      method: "POST", body: { participant: participantId, type },
    });
    pollState();
  } catch (e) {
    toast(e.status === 403 ? `Not allowed: ${e.body ? e.body.message : e.message}` : e.message);
  }
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// ------------------------------------------------------------------ rendering

function levelShare(dbov) {
  if (dbov === null || dbov === undefined) return 0;
  return Math.max(0, Math.min(1, (dbov - DB_FLOOR) / -DB_FLOOR));
}

function renderMain() {
  const tile = document.getElementById("main-tile");
  const id = view.shown;
  const p = view.participants.get(id);
  tile.dataset.speaker = id;
  tile.style.setProperty("--who", id ? colour(id) : "#555");
  document.getElementById("main-avatar").textContent = id ? initials(id) : "?";
  document.getElementById("main-name").textContent = id || "nobody yet";
  document.getElementById("main-pinned").hidden = !(id && id === view.pinned);
  document.getElementById("main-camoff").hidden = !(p && !p.video);
  // who really holds the floor when the feed cannot (camera off) or may not (a pin) follow
  const holder = view.participants.get(view.audio);
  const floor = document.getElementById("floor-badge");
  const camOff = Boolean(holder && !holder.video);
  floor.hidden = !(view.audio && view.audio !== id && holder);
  floor.classList.toggle("camoff", camOff);
  floor.textContent = `${view.audio} is speaking${camOff ? " · camera off" : ""}`;
  floor.dataset.participant = view.audio;
  const pres = document.getElementById("presenting");
  pres.hidden = !view.presenter;
  pres.textContent = `${view.presenter} is presenting · speaker in the thumbnail`;
}

function renderTiles() {
  const strip = document.getElementById("tiles");
  const ids = [...view.participants.keys()].sort();
  const existing = new Map([...strip.children].map((n) => [n.dataset.participant, n]));
  const nodes = ids.map((id) => existing.get(id) || makeTile(id));
  strip.replaceChildren(...nodes);
  for (const node of nodes) {
    const id = node.dataset.participant;
    const p = view.participants.get(id);
    node.classList.toggle("speaking", p.speaking);
    node.classList.toggle("shown", id === view.shown);
    node.classList.toggle("camoff", !p.video);
    node.classList.toggle("muted", p.muted);
    node.querySelector(".fill").style.width = `${Math.round(100 * levelShare(p.level))}%`;
    const cam = node.querySelector("button.cam");
    cam.textContent = p.video ? "Stop cam" : "Start cam";
    cam.setAttribute("aria-label", `${p.video ? "turn off" : "turn on"} ${id}'s camera`);
    const pin = node.querySelector("button.pin");
    pin.textContent = id === view.pinned ? "Unpin" : "Pin";
    pin.setAttribute("aria-pressed", String(id === view.pinned));
    node.querySelector(".flags").textContent =
      [p.video ? "" : "camera off", p.muted ? "muted" : "", p.screen_share ? "presenting" : ""]
        .filter(Boolean).join(" · ");
  }
}

function makeTile(id) {
  const tile = el("div", { class: "tile", dataset: { participant: id } },
    el("div", { class: "avatar" }, initials(id)),
    el("div", { class: "name", title: id }, id),
    el("div", { class: "level" }, el("div", { class: "fill" })),
    el("div", { class: "flags" }),
    el("div", { class: "controls" },
      el("button", { type: "button", class: "cam", onclick: () => {
        const p = view.participants.get(id);
        send(id, p && !p.video ? "VIDEO_ON" : "VIDEO_OFF");
      } }, "Stop cam"),
      el("button", { type: "button", class: "pin", onclick: () => {
        send(id, view.pinned === id ? "UNPIN" : "PIN");
      } }, "Pin")));
  tile.style.setProperty("--who", colour(id));
  return tile;
}

function renderLists() {
  document.getElementById("ranked").replaceChildren(...view.ranked.map((r) => el("li",
    { dataset: { participant: r.participant_id }, class: r.speaking ? "speaking" : "" },
    el("span", { class: "dot", style: `background:${colour(r.participant_id)}` }),
    el("span", { class: "who" }, r.participant_id),
    el("span", { class: "bar" }, el("span", { style: `width:${Math.round(100 * levelShare(r.level_dbov))}%` })),
    el("span", { class: "db" }, `${r.level_dbov.toFixed(0)} dB`))));
  document.getElementById("forwarding").replaceChildren(...view.forwarding.map((id) =>
    el("li", { dataset: { participant: id } },
      el("span", { class: "dot", style: `background:${colour(id)}` }), id)));
  document.getElementById("switches").replaceChildren(...view.switches.slice(0, MAX_SWITCHES).map((s) =>
    el("li", {}, el("span", { class: "t" }, seconds(s.t)),
      `${s.previous || "–"} → ${s.speaker || "–"} `, el("span", { class: "reason" }, s.reason))));
}

function renderTimeline() {
  const canvas = document.getElementById("timeline");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const end = view.tMs, start = end - WINDOW_MS;
  const band = 14, top = 16, plotH = h - band - top - 14;
  const x = (t) => ((t - start) / WINDOW_MS) * w;
  const y = (db) => top + plotH * (1 - levelShare(db));
  g.font = "10px sans-serif";
  g.fillStyle = "#8b949e";
  g.strokeStyle = "#30363d";
  for (let t = Math.max(0, Math.ceil(start / 10000) * 10000); t <= end; t += 10000) {
    g.beginPath(); g.moveTo(x(t), top); g.lineTo(x(t), h - band - 12); g.stroke();
    g.fillText(seconds(t), x(t) + 2, h - 2);
  }
  // ActiveSpeakers comes on change only: a level holds until the next one (a step line)
  for (const [id, series] of view.levels) {
    g.strokeStyle = colour(id);
    g.lineWidth = 1.5;
    g.beginPath();
    let prev = null;
    for (const [t, db] of series) {
      const xt = x(Math.max(t, start));
      if (prev === null) {
        g.moveTo(xt, y(db));
      } else {
        g.lineTo(xt, y(prev));
        g.lineTo(xt, y(db));
      }
      prev = db;
    }
    if (prev !== null) g.lineTo(x(end), y(prev));
    g.stroke();
  }
  const bandY = h - band - 12;
  for (let i = 0; i < view.bands.length; i++) {
    const [t, id] = view.bands[i];
    const next = i + 1 < view.bands.length ? view.bands[i + 1][0] : end;
    if (next < start || !id) continue;
    g.fillStyle = colour(id);
    g.fillRect(x(Math.max(t, start)), bandY, x(next) - x(Math.max(t, start)), band);
  }
  g.lineWidth = 1;
  let nextLabelLeft = Infinity;   // labels are drawn newest first, right to left
  let row = 0;
  for (const s of view.switches) {
    if (s.t < start) break;
    g.strokeStyle = "#e6edf3";
    g.setLineDash([3, 3]);
    g.beginPath(); g.moveTo(x(s.t), top - 4); g.lineTo(x(s.t), bandY + band); g.stroke();
    g.setLineDash([]);
    g.fillStyle = "#e6edf3";
    const label = `${s.speaker || "–"} ${s.reason.toLowerCase().replace("_", " ")}`;
    const lw = g.measureText(label).width;
    const lx = x(s.t) + 3 + lw > w ? x(s.t) - 3 - lw : x(s.t) + 3;
    row = lx + lw + 4 > nextLabelLeft ? 1 - row : 0;   // stagger labels that would overlap
    nextLabelLeft = lx;
    g.fillText(label, lx, top - 4 + row * 11);
  }
}

function render() {
  if (dirty) {
    dirty = false;
    renderMain();
    renderTiles();
    renderLists();
  }
  renderTimeline();
  requestAnimationFrame(render);
}

// ------------------------------------------------------------------ demo audio

async function setUpDemo() {
  let demo;
  try {
    demo = await api("/api/demo");
  } catch {
    return;   // not a demo: no sound to play
  }
  if (!demo.demo || demo.room_id !== roomId) return;
  const audio = document.getElementById("audio");
  const button = document.getElementById("play");
  const caption = document.getElementById("caption");
  button.hidden = false;
  async function sync() {
    const t0 = performance.now();
    const d = await api("/api/demo");
    if (d.position_ms === null) return;
    const pos = (d.position_ms + (performance.now() - t0) / 2) / 1000;
    if (Math.abs(audio.currentTime - pos) > SYNC_TOLERANCE_S) audio.currentTime = pos;
  }
  button.onclick = async () => {
    if (!audio.paused) {
      audio.pause();
      button.textContent = "▶ Play with sound";
      return;
    }
    audio.src ||= demo.audio_url;
    await sync();
    await audio.play();
    button.textContent = "❚❚ Pause sound";
  };
  setInterval(() => { if (!audio.paused) sync().catch(() => {}); }, 5000);
  setInterval(() => {   // who says what, from the demo's script, at the audio's position
    const t = audio.currentTime * 1000;
    const line = audio.paused ? null : demo.script.find((l) => l.start_ms <= t && t < l.end_ms);
    caption.hidden = !line;
    if (line) caption.textContent = `${line.participant}: “${line.text}”`;
  }, 200);
}

async function main() {
  document.getElementById("room-id").textContent = roomId;
  document.title = `speakerswitch · ${roomId}`;
  await session();
  openStream();
  pollState();
  setInterval(pollState, STATE_POLL_MS);
  requestAnimationFrame(render);
  setUpDemo();
}

main();
