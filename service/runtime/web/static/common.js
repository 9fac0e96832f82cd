// Shared by the rooms list and the room page: API calls, sign-in, names and colours.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.field}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** fetch() a JSON API path; throws ApiError with the server's {code, field, message}. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** Show the sign-in form; resolves once a token was accepted (kept in an HttpOnly cookie). */
export function signIn() {
  const form = document.getElementById("login");
  const error = document.getElementById("login-error");
  form.hidden = false;
  return new Promise((resolve) => {
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      try {
        const who = await api("/api/session", { method: "POST", body: { token: form.token.value } });
        form.hidden = true;
        form.token.value = "";
        resolve(who);
      } catch (e) {
        error.textContent = e.message;
      }
    };
  });
}

/** Who we are; asks for a token first when the server wants one. */
export async function session() {
  try {
    return await api("/api/session");
  } catch (e) {
    if (e.status === 401) return signIn();
    throw e;
  }
}

export function initials(id) {
  const parts = String(id).split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  if (parts.length >= 2) return (parts[0][0] + parts[1][0]).toUpperCase();
  return String(id).slice(0, 2).toUpperCase() || "?";
}

/** A stable colour per participant id, so the tile, its ring and its timeline line match. */
export function colour(id) {
  let h = 0;
  for (const ch of String(id)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${(h * 47) % 360} 70% 58%)`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;   // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}
