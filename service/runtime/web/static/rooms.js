// The rooms list: the caller's tenant's rooms, refreshed every two seconds.
import { api, el, session } from "./common.js";

const REFRESH_MS = 2000;

async function refresh() {
  let data;
  try {
    data = await api("/api/rooms");
  } catch (e) {
    if (e.status === 401) {
      await session();
      return;
    }
    throw e;
  }
  const body = document.querySelector("#rooms tbody");
  body.replaceChildren(...data.rooms.map((r) => el("tr", { dataset: { room: r.room_id } },
    el("td", {}, el("a", { href: `/rooms/${encodeURIComponent(r.room_id)}` }, r.room_id)),
    el("td", { class: "num" }, String(r.participants)),
    el("td", {}, r.speaker_id || "–"),
    el("td", { class: "num" }, r.switches_per_min === null ? "…" : r.switches_per_min.toFixed(1)),
  )));
  document.getElementById("empty").hidden = data.rooms.length > 0;
  const more = document.getElementById("more");
  more.hidden = data.total <= data.rooms.length;
  more.textContent = `showing ${data.rooms.length} of ${data.total} rooms`;
}

async function main() {
  const who = await session();
  document.getElementById("tenant").textContent = who.auth ? `tenant ${who.tenant}` : "no authentication (local)";
  for (;;) {
    await refresh().catch((e) => console.warn("rooms refresh failed:", e.message));
    await new Promise((r) => setTimeout(r, REFRESH_MS));
  }
}

main();
