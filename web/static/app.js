/* Runbook Orchestrator: the page script. Vanilla ES2020 modules, no build step.
 *
 * The server renders every piece of a page from one Jinja partial (web/templates/_*.html), in the full
 * page and alone. A live page follows the JSON event streams of the API; an event names the pieces it
 * touched, and the page fetches just those and swaps them in (pieces.js). What is left here is glue:
 * which event touches which piece, live frames, the log, the ticking duration, video seek, actions.
 * What this script writes itself (log lines, captions, toasts) goes in as text, never as HTML.
 *
 * Behaviour is chosen by data attributes, never by page URL:
 *   tbody[data-live="jobs"]   live jobs table (job list, runbook history)
 *   .job-page[data-job-id]    live job detail page
 *   form[data-runbook]        runbook run form (run_form.js)
 */

import { $, $$, api, clock, el, isObject, localizeTimes, pad, parseTime, toast } from "./kit.js";
import { batcher, fetchPieces, openStep, place } from "./pieces.js";
import { initRunForm, initScheduleButton } from "./run_form.js";
import { initControl } from "./control.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Seconds as "12.3 s", "4 min 12 s", "1 h 04 min" (as the Jinja macro `duration`), for the ticking clock. */
function formatDuration(s) {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

// ---------------------------------------------------------------- SSE

function setIndicator(state) {
  const node = $('[data-role="live-indicator"]');
  if (!node) return;
  node.hidden = state === "off";
  node.dataset.state = state;
  const text = $('[data-role="live-text"]', node);
  if (text) text.textContent = { open: "Live", connecting: "Reconnecting…", closed: "Offline" }[state] || "";
}

/**
 * Follow an SSE stream, calling handlers[event name] with the event's parsed JSON. EventSource
 * reconnects by itself with Last-Event-ID; when the browser gives up (readyState CLOSED, after an HTTP
 * error), a new one is opened with backoff, resuming after the last event seen (`last_event_id`).
 */
export function connect(url, handlers, lastId = "") {
  const conn = { source: null, stopped: false, retry: 1000, lastId };
  const open = () => {
    if (conn.stopped) return;
    setIndicator("connecting");
    const resume = conn.lastId ? `${url.includes("?") ? "&" : "?"}last_event_id=${conn.lastId}` : "";
    const source = new EventSource(url + resume, { withCredentials: true });
    conn.source = source;
    source.onopen = () => {
      conn.retry = 1000;
      setIndicator("open");
    };
    source.onerror = () => {
      if (conn.stopped) return;
      if (source.readyState !== EventSource.CLOSED) return setIndicator("connecting");
      setIndicator("closed");
      setTimeout(open, conn.retry);
      conn.retry = Math.min(conn.retry * 2, 30000);
    };
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        conn.lastId = event.lastEventId || conn.lastId;
        try {
          handler(JSON.parse(event.data));
        } catch (error) {
          console.error(`orchestrator: ${name} event`, error);
        }
      });
    }
  };
  conn.close = () => {
    conn.stopped = true;
    conn.source?.close();
    setIndicator("off");
  };
  open();
  window.addEventListener("pagehide", () => conn.source?.close());
  return conn;
}

// ---------------------------------------------------------------- jobs tables

/** On any job's status or report, each table fetches its rows again (its own filters, on the server). */
function initJobsTables(tbodies) {
  const refresh = batcher(async () => {
    for (const tbody of tbodies) {
      const [fresh] = await fetchPieces(tbody.dataset.rows);
      if (!fresh) continue;
      localizeTimes(fresh);
      const mine = new Map($$("tr[data-job-id]", tbody).map((row) => [row.dataset.jobId, row]));
      const rows = $$("tr[data-job-id]", fresh);
      if (tbody.dataset.firstPage !== "true") {
        for (const row of rows) if (!mine.get(row.dataset.jobId)?.isEqualNode(row)) mine.get(row.dataset.jobId)?.replaceWith(row);
        continue; // a later page keeps its rows where they are; only they change
      }
      for (const row of rows) if (!mine.has(row.dataset.jobId)) row.classList.add("row-new");
      tbody.replaceChildren(...fresh.childNodes);
    }
  }, 500);
  connect("/api/v1/events", { status: () => refresh("rows"), report: () => refresh("rows") });
}

// ---------------------------------------------------------------- job page

/** Every piece of the job page, for a page that must catch up (a `snapshot` after a long absence). */
const EVERYTHING = ["head", "approval", "metrics", "steps", "children", "records", "io", "artifacts", "video", "audit", "notifications"];

function initJob(root) {
  const jobId = root.dataset.jobId;
  const base = `/api/v1/jobs/${encodeURIComponent(jobId)}`;
  const role = (name) => $(`[data-role="${name}"]`, root);
  const piece = (key) => $(`[data-part="${key}"]`, root);
  const status = () => piece("head")?.dataset.status;

  // The records table: its filter and length, asked of the server; a new record joins it if it fits.
  const PAGE = Number(piece("records")?.dataset.limit) || 100;
  const records = { status: "", limit: PAGE };
  const fits = (row) =>
    row.dataset.into !== "records" ||
    ((!records.status || row.dataset.status === records.status) && $$("tr[data-sequence]", role("records")).length < records.limit);

  const want = batcher(async (keys) => {
    if (keys.size > 60) keys = new Set(EVERYTHING); // a long absence: catch up at once
    const query = new URLSearchParams([...keys].map((key) => ["part", key]));
    query.set("status", records.status);
    query.set("limit", String(records.limit));
    for (const fresh of await fetchPieces(`/jobs/${encodeURIComponent(jobId)}/parts?${query}`)) place(root, fresh, fits);
    control.sync();
    followEnd();
  }, 150);

  // --- the live view: screenshots, and live frames while somebody watches; taking the wheel (control.js)

  const local = (url) => (typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null);

  function showShot(href, caption, flash) {
    const img = role("live-screenshot-img");
    const link = role("live-screenshot-link");
    if (!img || !link) return img;
    img.classList.remove("is-fresh");
    if (img.getAttribute("src") !== href) img.src = href;
    if (flash) void img.offsetWidth; // restart the fade-in
    img.classList.toggle("is-fresh", flash);
    img.hidden = link.hidden = false;
    link.href = href;
    role("live-screenshot-empty").hidden = true;
    role("live-screenshot-caption").replaceChildren(...caption);
    localizeTimes(role("live-screenshot-caption"));
    return img;
  }

  // One frame loads at a time, always the newest; frames that arrive meanwhile replace the one
  // waiting, so a slow connection sees fewer frames, never older ones.
  const frames = { loading: false, next: null };
  function showFrame(data) {
    frames.next = data;
    if (!frames.loading) loadFrame();
  }
  function loadFrame() {
    const data = frames.next;
    const href = local(data?.url);
    frames.next = null;
    if (!href) return;
    frames.loading = true;
    const image = new Image();
    image.onload = () => {
      frames.loading = false;
      const img = showShot(href, [el("span", { class: "live-dot" }, "Live"), data.step_id ? ` · step ${data.step_id}` : ""], false);
      if (img) Object.assign(img.dataset, { frameAt: data.at || "", frameShownAt: String(Date.now()) });
      const approvalLive = role("approval-live");
      if (approvalLive) {
        approvalLive.src = href;
        approvalLive.hidden = false;
      }
      loadFrame();
    };
    image.onerror = () => {
      frames.loading = false;
      loadFrame();
    };
    image.src = href;
  }

  const control = initControl(role("live-view"), base, status, showFrame);

  function appendLog(data) {
    const list = role("log");
    if (!list) return;
    role("log-empty")?.remove();
    const level = String(data.level || "info").toLowerCase().replace(/[^a-z]/g, "");
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    const at = parseTime(data.at) || new Date();
    const message = String(data.message ?? "");
    list.append(el("li", { class: `log-${level}` }, el("span", { class: "log-time" }, clock(at)), el("span", { class: "log-level" }, level), el("span", { class: "log-message" }, message)));
    while (list.childElementCount > 500) list.firstElementChild.remove();
    if (nearBottom) list.scrollTop = list.scrollHeight;
  }

  // The duration ticks while the job runs (the metrics piece says since when).
  setInterval(() => {
    const started = parseTime(piece("metrics")?.dataset.startedAt);
    const node = $('[data-metric="duration_s"]', root);
    if (started && node) node.textContent = formatDuration(Math.max(0, Date.now() - started) / 1000);
  }, 1000);

  // --- clicks: open a step, play the video from a step, more records, job actions

  root.addEventListener("click", (event) => {
    const seek = event.target.closest("button[data-seek]");
    const video = role("video");
    if (seek && video) {
      video.currentTime = Number(seek.dataset.seek);
      video.scrollIntoView({ block: "nearest" });
      video.play().catch(() => {});
      return;
    }
    const head = event.target.closest(".step-head");
    const li = head && !event.target.closest("a") && head.closest("li[data-step-id]");
    if (li) openStep(li, !li.classList.contains("is-open"));
    if (event.target.closest('[data-role="records-more-button"]')) {
      records.limit += PAGE;
      want("records");
    }
  });

  role("records-filter")?.addEventListener("change", (event) => {
    Object.assign(records, { status: event.target.value, limit: PAGE });
    want("records");
  });

  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    const action = button.dataset.action;
    const label = button.textContent.trim();
    const buttons = $$("button[data-action]", root);
    for (const b of buttons) b.disabled = true;
    button.classList.add("is-busy");
    try {
      if (action === "rerun") {
        const res = await api("POST", `${base}/rerun${button.dataset.query ? `?${button.dataset.query}` : ""}`, {});
        if (res.ok && res.data?.id !== undefined) window.location.assign(`/jobs/${encodeURIComponent(res.data.id)}`);
        else toast(res.data?.error || "The job could not be run again.", "error");
        return;
      }
      // The status (and approval request) the person saw: if someone else acted first, this is refused (409).
      const body = { expected_status: status() };
      if (action === "approve" || action === "reject") {
        const asked = piece("approval")?.dataset.requestedAt;
        const comment = role("comment")?.value.trim();
        if (asked) body.expected_request = asked;
        if (comment) body.comment = comment;
      }
      const res = await api("POST", `${base}/${action}`, body);
      if (res.ok) toast(`${label}: done.`, "ok", 3000);
      else toast(res.data?.error || `${label} failed (${res.status}).`, "error", 7000);
      want("head", "approval", "metrics", "audit");
    } finally {
      for (const b of buttons) b.disabled = false;
      button.classList.remove("is-busy");
    }
  });

  // --- live: each event asks for the pieces it touched

  const conn = connect(
    `${base}/events`,
    {
      snapshot: () => want(...EVERYTHING),
      status: () => want("head", "approval", "metrics", "audit", "notifications"),
      step(data) {
        const id = (isObject(data.step) ? data.step : data).id;
        want(`step:${id}`, `artifacts:${id}`, "metrics");
      },
      screenshot(data) {
        if (data.live) return showFrame(data);
        const href = local(data.url);
        const time = data.at ? el("time", { datetime: data.at }, data.at) : "";
        if (href) showShot(href, [data.step_id ? `Step ${data.step_id}` : "", data.step_id && time ? " · " : "", time], true);
        if (data.step_id !== undefined && data.step_id !== null) want(`step:${data.step_id}`);
      },
      artifact: (data) => want(`artifact:${data.artifact?.id}`, "video"),
      approval: () => want("approval", "head"),
      log(data) {
        appendLog(data);
        want("notifications"); // a missed service level is announced as a log line
      },
      child: () => want("children"),
      record(data) {
        role("records-section").hidden = false;
        want(`record:${data.record?.sequence}`, "records-more", "metrics");
      },
      report: () => want("head", "metrics", "io", "audit", "video"),
    },
    root.dataset.lastEvent, // the page shows the job as of this event: the stream goes on from there
  );

  // A finished job changes no more: stop listening after a while, unless its session video (encoded
  // after the job ends) has yet to come.
  let closing = null;
  function followEnd() {
    if (!TERMINAL.has(status())) {
      clearTimeout(closing);
      closing = null;
    } else if (!closing) {
      closing = setTimeout(() => {
        closing = null;
        if (!piece("video")?.dataset.awaiting) return conn.close();
        want("video");
        followEnd();
      }, 5000);
    }
  }
  followEnd();
}

// ---------------------------------------------------------------- start

function start() {
  localizeTimes();
  const tables = $$('tbody[data-live="jobs"]');
  if (tables.length) initJobsTables(tables);
  const job = $(".job-page[data-job-id]");
  if (job) initJob(job);
  for (const form of $$("form[data-runbook]")) initRunForm(form);
  for (const button of $$("button[data-schedule-url]")) initScheduleButton(button);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
