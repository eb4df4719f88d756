/* Runbook Orchestrator: what the page scripts share. DOM lookups, elements made from text (never
 * from HTML), times in the viewer's zone, the JSON API with the session's CSRF token, and toasts. */

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
export const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const pad = (n) => String(n).padStart(2, "0");

/** An element with these attributes and children (nodes, or strings put in as text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function csrfToken() {
  return $('meta[name="csrf-token"]')?.getAttribute("content") || null;
}

/** The session ended (expired, or signed out elsewhere): sign in again and come back here. */
export function toLogin() {
  window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

export const UNREACHABLE = "The server could not be reached. Check your connection and try again.";

/** fetch JSON; resolves to {ok, status, data} and never throws for HTTP errors. */
export async function api(method, url, body) {
  const headers = { Accept: "application/json", "X-Source": "ui" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = csrfToken();
  if (token && method !== "GET") headers["X-CSRF-Token"] = token;
  let response;
  try {
    response = await fetch(url, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { ok: false, status: 0, data: { error: UNREACHABLE } };
  }
  if (response.status === 401) {
    toLogin();
    return { ok: false, status: 401, data: { error: "Your session has ended; sign in again." } };
  }
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) data = await response.json().catch(() => null);
  if (!response.ok && !isObject(data)) data = { error: `The server answered ${response.status} ${response.statusText}.` };
  return { ok: response.ok, status: response.status, data };
}

export function toast(message, kind = "info", ms = 5000) {
  const box = $('[data-role="toasts"]');
  if (!box) return;
  const node = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(node);
  setTimeout(() => node.remove(), ms);
}

export function parseTime(iso) {
  if (!iso) return null;
  const text = /^\d{4}-\d{2}-\d{2}T[\d:.]+$/.test(iso) ? `${iso}Z` : String(iso); // no zone: UTC
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

/** Server-rendered <time> elements show UTC; show them in the viewer's time zone. */
export function localizeTimes(root = document) {
  for (const node of $$("time[datetime]:not([data-localized])", root)) {
    const d = parseTime(node.getAttribute("datetime"));
    if (d) node.textContent = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d)}`;
    node.dataset.localized = "1";
  }
}
