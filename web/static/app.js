/* Runbook Orchestrator — browser behaviour. Vanilla ES2020, no build step.
 *
 * Behaviour is chosen by data attributes, never by page URL:
 *   tbody[data-live="jobs"]      live jobs table (jobs list, runbook history)
 *   [data-job-id] .job-page      live job detail page
 *   form[data-runbook]           runbook run form
 *
 * Everything that comes from the server (captured page text above all) is put into the
 * DOM with textContent / createElement only. Never innerHTML with data.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------- helpers

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /** Create an element. attrs: {class, dataset:{}, hidden, ...attributes}; children: nodes or strings. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "text") node.textContent = value;
      else if (key === "hidden") node.hidden = true;
      else if (key.startsWith("on") || key === "style") throw new Error(`refusing attribute ${key}`);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.firstChild.remove();
    return node;
  }

  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const humanize = (s) => String(s ?? "").replaceAll("_", " ");
  const errorText = (e) => (isObject(e) ? e.message ?? JSON.stringify(e) : e ?? "");

  /** Only same-origin paths and http(s) URLs may become href / src. */
  function safeUrl(url) {
    if (typeof url !== "string" || url === "") return null;
    if (url.startsWith("/") && !url.startsWith("//")) return url;
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  /** Seconds as "12.3 s", "4 min 12 s", "1 h 04 min" (the same as the Jinja macro). */
  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "" || Number.isNaN(Number(seconds))) return "—";
    const s = Number(seconds);
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  /** Bytes in human units, like Jinja's filesizeformat (decimal). */
  function formatSize(bytes) {
    if (bytes === null || bytes === undefined || Number.isNaN(Number(bytes))) return "—";
    const n = Number(bytes);
    if (n === 1) return "1 Byte";
    if (n < 1000) return `${n} Bytes`;
    const units = ["kB", "MB", "GB", "TB", "PB"];
    let value = n;
    let unit = -1;
    do {
      value /= 1000;
      unit += 1;
    } while (value >= 1000 && unit < units.length - 1);
    return `${value.toFixed(1)} ${units[unit]}`;
  }

  function parseTime(iso) {
    if (!iso) return null;
    let text = String(iso);
    // A timestamp without a zone is UTC on the server side.
    if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) text += "Z";
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function formatTime(iso) {
    const d = parseTime(iso);
    if (!d) return iso ? String(iso).slice(0, 19).replace("T", " ") : "—";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function timeEl(iso) {
    if (!iso) return el("span", { class: "muted" }, "—");
    const node = el("time", { datetime: String(iso), title: String(iso) }, formatTime(iso));
    node.dataset.localized = "1";
    return node;
  }

  /** Server-rendered <time> elements show UTC; show them in the viewer's time zone. */
  function localizeTimes(root = document) {
    for (const node of $$("time[datetime]:not([data-localized])", root)) {
      node.textContent = formatTime(node.getAttribute("datetime"));
      node.dataset.localized = "1";
    }
  }

  function badge(status, role) {
    const value = status || "unknown";
    return el("span", { class: `badge status-${value}`, dataset: role ? { role } : undefined }, humanize(value));
  }

  function setBadge(node, status) {
    if (!node) return;
    const value = status || "unknown";
    node.className = `badge status-${value}`;
    node.textContent = humanize(value);
  }

  const prettyJSON = (value) => JSON.stringify(value ?? {}, null, 2);

  function csrfToken() {
    const meta = $('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  /** fetch JSON; resolves to {ok, status, data} and never throws for HTTP errors. */
  async function api(method, url, body) {
    const headers = { Accept: "application/json", "X-Source": "ui" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = csrfToken();
    if (token && method !== "GET") headers["X-CSRF-Token"] = token;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      return { ok: false, status: 0, data: { error: "The server could not be reached. Check your connection and try again." } };
    }
    if (response.status === 401) {
      // the session ended (expired, or signed out elsewhere): sign in again and come back here
      window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      return { ok: false, status: 401, data: { error: "Your session has ended; sign in again." } };
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok && !isObject(data)) data = { error: `The server answered ${response.status} ${response.statusText}.` };
    return { ok: response.ok, status: response.status, data };
  }

  function toast(message, kind = "info", ms = 5000) {
    const box = $('[data-role="toasts"]');
    if (!box) return;
    const node = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
    box.append(node);
    setTimeout(() => node.remove(), ms);
  }

  /** Run fn at most once per `ms`, the last call always honoured (leading + trailing). */
  function throttle(fn, ms) {
    let last = 0;
    let timer = null;
    return () => {
      if (timer) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    };
  }

  // ---------------------------------------------------------------- SSE

  function setIndicator(state) {
    const node = $('[data-role="live-indicator"]');
    if (!node) return;
    node.hidden = false;
    node.dataset.state = state;
    const text = $('[data-role="live-text"]', node);
    if (text) text.textContent = { open: "Live", connecting: "Reconnecting…", closed: "Offline" }[state] || state;
  }

  /**
   * Open an EventSource and dispatch named events as parsed JSON to handlers[name].
   * EventSource reconnects by itself (sending Last-Event-ID); only when the browser gives
   * up for good (readyState CLOSED, e.g. after an HTTP error) is a new one opened, with backoff.
   */
  function connect(url, handlers) {
    const conn = { source: null, stopped: false, retry: 1000 };
    const open = () => {
      if (conn.stopped) return;
      setIndicator("connecting");
      const source = new EventSource(url, { withCredentials: true });
      conn.source = source;
      source.onopen = () => {
        conn.retry = 1000;
        setIndicator("open");
      };
      source.onerror = () => {
        if (conn.stopped) return;
        if (source.readyState === EventSource.CLOSED) {
          setIndicator("closed");
          setTimeout(open, conn.retry);
          conn.retry = Math.min(conn.retry * 2, 30000);
        } else {
          setIndicator("connecting");
        }
      };
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          let data;
          try {
            data = JSON.parse(event.data);
          } catch {
            return;
          }
          try {
            handler(data);
          } catch (error) {
            console.error(`orchestrator: ${name} event`, error);
          }
        });
      }
    };
    conn.close = () => {
      conn.stopped = true;
      if (conn.source) conn.source.close();
      const node = $('[data-role="live-indicator"]');
      if (node) node.hidden = true;
    };
    open();
    window.addEventListener("pagehide", () => conn.source && conn.source.close());
    return conn;
  }

  // ---------------------------------------------------------------- jobs list

  function jobRow(job) {
    const id = String(job.id);
    return el(
      "tr",
      { dataset: { jobId: id, status: job.status || "" } },
      el(
        "td",
        { dataset: { cell: "process" } },
        el("a", { class: "strong", href: `/jobs/${encodeURIComponent(id)}` }, job.runbook || job.process || "—"),
        el("div", { class: "sub mono" }, id.length > 12 ? `${id.slice(0, 11)}…` : id),
      ),
      el("td", { dataset: { cell: "status" } }, badge(job.status)),
      el("td", { dataset: { cell: "started" } }, timeEl(job.started_at)),
      el("td", { dataset: { cell: "finished" } }, timeEl(job.finished_at)),
      el("td", { class: "num", dataset: { cell: "duration" } }, formatDuration(job.duration_s ?? job.metrics?.duration_s)),
      el("td", { dataset: { cell: "robot" } }, job.robot || "—"),
      el("td", { dataset: { cell: "source" } }, job.source || "—"),
    );
  }

  function findRow(tbody, jobId) {
    return $(`tr[data-job-id="${CSS.escape(String(jobId))}"]`, tbody);
  }

  // The statuses each tab of /jobs lists (the same table as web/pages.py TABS).
  const TAB_STATUSES = {
    running: ["queued", "running", "waiting_for_approval", "paused"],
    completed: ["completed"],
    failed: ["failed"],
  };

  function initJobsTables(tbodies) {
    const pending = new Set();
    const refreshTimers = new Map();

    const accepts = (tbody, status, runbook, job) => {
      const { tab = "all", filterStatus = "", filterRunbook = "", firstPage = "true" } = tbody.dataset;
      const { filterTag = "", filterSource = "", filterQ = "", filterTo = "" } = tbody.dataset;
      if (firstPage !== "true") return false;
      if (tab !== "all" && !(TAB_STATUSES[tab] || [tab]).includes(status)) return false;
      if (filterStatus && status !== filterStatus) return false;
      if (runbook !== undefined && filterRunbook && runbook !== filterRunbook) return false;
      if (job) {
        if (filterTag && !(job.tags || []).includes(filterTag)) return false;
        if (filterSource && job.source !== filterSource) return false;
        const q = filterQ.toLowerCase();
        if (q && !`${job.runbook} ${job.external_id || ""}`.toLowerCase().includes(q)) return false;
        if (filterTo && job.created_at && job.created_at.slice(0, filterTo.length) > filterTo) return false;
      }
      return true;
    };

    const replaceRow = (job) => {
      for (const tbody of tbodies) {
        const row = findRow(tbody, job.id);
        if (row) row.replaceWith(jobRow(job));
      }
    };

    // Started / finished / robot change with the status: refetch the row, debounced per job.
    const scheduleRefresh = (jobId) => {
      clearTimeout(refreshTimers.get(jobId));
      refreshTimers.set(
        jobId,
        setTimeout(async () => {
          refreshTimers.delete(jobId);
          const res = await api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
          if (res.ok && isObject(res.data)) replaceRow(res.data);
        }, 600),
      );
    };

    const prepend = async (jobId) => {
      if (pending.has(jobId)) return;
      pending.add(jobId);
      try {
        const res = await api("GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`);
        if (!res.ok || !isObject(res.data)) return;
        const job = res.data;
        for (const tbody of tbodies) {
          if (findRow(tbody, job.id) || !accepts(tbody, job.status, job.runbook, job)) continue;
          for (const empty of $$("tr.empty-row", tbody)) empty.remove();
          const row = jobRow(job);
          row.classList.add("row-new");
          tbody.prepend(row);
        }
      } finally {
        pending.delete(jobId);
      }
    };

    connect("/api/v1/events", {
      status(data) {
        if (!data || data.job_id === undefined) return;
        let known = false;
        for (const tbody of tbodies) {
          const row = findRow(tbody, data.job_id);
          if (row) {
            known = true;
            row.dataset.status = data.status;
            setBadge($('[data-cell="status"] .badge', row), data.status);
          }
        }
        if (known) scheduleRefresh(String(data.job_id));
        else if (tbodies.some((tbody) => accepts(tbody, data.status))) prepend(String(data.job_id));
      },
      report(data) {
        if (!data || data.job_id === undefined) return;
        const seconds = data.duration_s ?? data.metrics?.duration_s;
        for (const tbody of tbodies) {
          const row = findRow(tbody, data.job_id);
          if (!row) continue;
          const cell = $('[data-cell="duration"]', row);
          if (cell && seconds !== undefined && seconds !== null) cell.textContent = formatDuration(seconds);
          if (data.status) {
            row.dataset.status = data.status;
            setBadge($('[data-cell="status"] .badge', row), data.status);
          }
        }
      },
    });
  }

  // ---------------------------------------------------------------- job page

  const CONTROLS = [
    { action: "pause", label: "Pause", from: ["running"], perm: "control", cls: "btn" },
    { action: "resume", label: "Resume", from: ["paused"], perm: "control", cls: "btn btn-primary" },
    {
      action: "cancel",
      label: "Cancel",
      from: ["scheduled", "queued", "running", "paused", "waiting_for_approval"],
      perm: "control",
      cls: "btn btn-danger-outline",
    },
    { action: "rerun", label: "Run again", from: ["completed", "failed", "cancelled"], perm: "run", cls: "btn btn-ghost" },
  ];
  const APPROVALS = [
    { action: "approve", label: "Approve", from: ["waiting_for_approval"], perm: "approve", cls: "btn btn-success" },
    { action: "reject", label: "Reject", from: ["waiting_for_approval"], perm: "approve", cls: "btn btn-danger" },
  ];
  const ACTION_LABELS = Object.fromEntries([...CONTROLS, ...APPROVALS].map((c) => [c.action, c.label]));

  function initJob(root) {
    const jobId = root.dataset.jobId;
    const base = `/api/v1/jobs/${encodeURIComponent(jobId)}`;
    const can = {
      approve: root.dataset.canApprove !== "false",
      control: root.dataset.canControl !== "false",
      run: root.dataset.canRun !== "false",
    };
    const role = (name) => $(`[data-role="${name}"]`, root);
    const stepShots = new Map(); // step id -> latest screenshot URL seen live
    let liveShotAt = null; // time of the image shown in the live panel
    let conn = null;
    let closeTimer = null;

    // --- status and buttons

    function renderButtons(container, specs, status) {
      if (!container) return;
      const allowed = specs.filter((spec) => can[spec.perm] && spec.from.includes(status));
      const key = allowed.map((spec) => spec.action).join(",");
      if (container.dataset.key === key && container.childElementCount === allowed.length) return;
      container.dataset.key = key;
      clear(container);
      for (const spec of allowed) {
        container.append(el("button", { type: "button", class: spec.cls, dataset: { action: spec.action } }, spec.label));
      }
    }

    function setStatus(status) {
      if (!status) return;
      root.dataset.status = status;
      setBadge(role("status-badge"), status);
      renderButtons(role("controls"), CONTROLS, status);
      renderButtons(role("approval-actions"), APPROVALS, status);
      const panel = role("approval-panel");
      if (panel) {
        const waiting = status === "waiting_for_approval";
        if (!waiting && !panel.hidden) {
          const comment = role("comment");
          if (comment) comment.value = "";
        }
        panel.hidden = !waiting;
      }
      if (TERMINAL.has(status)) finishSoon();
      else if (closeTimer) {
        clearTimeout(closeTimer);
        closeTimer = null;
      }
    }

    // A finished job changes no more: take a last look, then stop listening; a job that records
    // a video is followed until its video has arrived (it is encoded after the job ends).
    let awaitingVideo = false;
    function finishSoon() {
      if (closeTimer || !conn) return;
      closeTimer = setTimeout(async () => {
        closeTimer = null;
        await refetch();
        if (!TERMINAL.has(root.dataset.status) || !conn) return;
        if (awaitingVideo) finishSoon();
        else conn.close();
      }, 5000);
    }

    // A re-run asks its approvals again: say so, with the decision taken the last time.
    function showRerun(approval) {
      const node = role("approval-rerun");
      if (!node || !approval.rerun_of) return;
      clear(node);
      const link = el("a", { class: "mono", href: `/jobs/${encodeURIComponent(approval.rerun_of)}` }, approval.rerun_of);
      append(node, ["This is a re-run of job ", link, ": it asks again."]);
      const earlier = approval.earlier;
      if (isObject(earlier) && earlier.decision) {
        append(node, [` Last time: ${earlier.decision} by ${earlier.by || "someone"}`]);
        if (earlier.decided_at) append(node, [" ", timeEl(earlier.decided_at)]);
        append(node, [earlier.comment ? `, comment: “${earlier.comment}”.` : "."]);
      }
      node.hidden = false;
    }

    function showApproval(approval, status) {
      if (!isObject(approval)) return;
      if (approval.requested_at && !approval.decision) root.dataset.approvalRequestedAt = approval.requested_at;
      const message = role("approval-message");
      if (message && approval.message) message.textContent = approval.message;
      const meta = role("approval-meta");
      if (meta && (approval.step_id || approval.requested_at)) {
        clear(meta);
        if (approval.step_id) append(meta, ["Step ", el("code", {}, approval.step_id)]);
        if (approval.requested_at) append(meta, [" · requested ", timeEl(approval.requested_at)]);
      }
      showRerun(approval);
      const link = role("approval-shot-link");
      const shot = role("approval-shot");
      if (link && shot && approval.screenshot_url) {
        link.href = approval.screenshot_url;
        shot.src = approval.screenshot_url;
        link.hidden = false;
      }
      const box = role("approval-captured-box");
      const captured = role("approval-captured");
      if (box && captured && isObject(approval.captured) && Object.keys(approval.captured).length) {
        captured.textContent = JSON.stringify(approval.captured, null, 2);
        box.hidden = false;
      }
      if (status === "waiting_for_approval" || root.dataset.status === "waiting_for_approval") {
        const panel = role("approval-panel");
        if (panel) panel.hidden = false;
      }
    }

    // --- header

    function setSummary(summary) {
      const node = role("summary");
      if (!node) return;
      node.textContent = summary || "";
      node.hidden = !summary;
    }

    function setError(error) {
      const box = role("error");
      if (!box) return;
      box.hidden = !error;
      const message = role("error-message");
      if (message) message.textContent = error ? errorText(error) : "";
      const step = role("error-step");
      if (step) {
        clear(step);
        if (isObject(error) && error.step_id) append(step, ["at step ", el("code", {}, error.step_id)]);
      }
    }

    function setMeta(job) {
      const field = (name) => $(`[data-role="meta"] [data-field="${name}"]`, root);
      for (const name of ["priority", "source", "robot"]) {
        const node = field(name);
        if (node && name in job) node.textContent = job[name] || "—";
      }
      for (const name of ["created_at", "started_at", "finished_at"]) {
        const node = field(name);
        if (node && name in job) clear(node).append(timeEl(job[name]));
      }
      const tags = field("tags");
      if (tags && Array.isArray(job.tags)) {
        clear(tags);
        if (job.tags.length === 0) tags.append(el("span", { class: "muted" }, "—"));
        for (const tag of job.tags) tags.append(el("span", { class: "chip" }, tag));
      }
    }

    // --- metrics

    /** While a job runs its stored metrics are not written yet: count them from its steps. */
    function liveMetrics(job) {
      const steps = Array.isArray(job.steps) ? job.steps : [];
      const count = (status) => steps.filter((step) => step.status === status).length;
      return {
        steps_succeeded: count("success"),
        steps_failed: count("failed"),
        steps_skipped: count("skipped"),
        retries: steps.reduce((sum, step) => sum + Number(step.retries || 0), 0),
      };
    }

    let startedAt = null;
    let finished = false;
    // the duration ticks while the job runs
    setInterval(() => {
      if (finished || !startedAt) return;
      const node = $('[data-metric="duration_s"]', root);
      if (node) node.textContent = formatDuration((Date.now() - startedAt.getTime()) / 1000);
    }, 1000);

    function renderMetrics(metrics, counts, duration) {
      if (isObject(metrics)) {
        for (const key of ["steps_succeeded", "steps_failed", "steps_skipped", "retries"]) {
          const node = $(`[data-metric="${key}"]`, root);
          if (node && key in metrics) node.textContent = String(metrics[key] ?? 0);
        }
      }
      const seconds = metrics?.duration_s ?? duration;
      const durationNode = $('[data-metric="duration_s"]', root);
      if (durationNode && seconds !== undefined && seconds !== null) durationNode.textContent = formatDuration(seconds);
      if (isObject(counts)) {
        const box = role("record-counts");
        if (box) box.hidden = !counts.total;
        for (const key of ["total", "succeeded", "failed", "skipped"]) {
          const node = $(`[data-count="${key}"]`, root);
          if (node) node.textContent = String(counts[key] ?? 0);
        }
      }
    }

    // --- step timeline

    function stepShotLink(step, url) {
      const href = safeUrl(url);
      if (!href) return null;
      return el(
        "a",
        { class: "step-shot", dataset: { role: "step-shot" }, href, target: "_blank", rel: "noopener" },
        el("img", { src: href, alt: `Screenshot of step ${step.name || step.id}`, loading: "lazy" }),
      );
    }

    /** What opens when a person clicks a step: its screenshot, diagnostics and a jump into the video. */
    function stepDetail(step, shotUrl) {
      const detail = el("div", { class: "step-detail", dataset: { role: "step-detail" }, hidden: true });
      const href = safeUrl(shotUrl);
      if (href) detail.append(el("img", { class: "step-detail-shot", src: href, alt: `Screenshot of step ${step.name || step.id}`, loading: "lazy" }));
      const d = step.diagnostics;
      if (isObject(d)) {
        const list = el("dl", { class: "kv diagnostics", dataset: { role: "diagnostics" } });
        const row = (name, value) => append(list, [el("dt", {}, name), el("dd", {}, value)]);
        if (Array.isArray(d.selectors) && d.selectors.length) row(d.selectors.length > 1 ? "Selectors tried" : "Selector", el("ol", {}, ...d.selectors.map((x) => el("li", {}, el("code", {}, String(x))))));
        if (d.url) row("Page", el("span", { class: "mono" }, String(d.url)));
        if (d.title) row("Title", String(d.title));
        const errors = Array.isArray(d.console_errors) ? d.console_errors : [];
        row("Console errors", errors.length ? el("ul", {}, ...errors.map((x) => el("li", { class: "mono small" }, String(x)))) : "none");
        const failedShot = safeUrl(d.screenshot_url);
        if (failedShot && failedShot !== href) row("When it failed", el("img", { class: "step-detail-shot", src: failedShot, alt: "The page when the step failed" }));
        detail.append(list);
      }
      if (typeof step.video_offset_s === "number") {
        const play = el("button", { type: "button", class: "btn btn-small", dataset: { seek: String(step.video_offset_s) } }, `Play from ${formatDuration(step.video_offset_s)}`);
        detail.append(play);
      }
      return detail;
    }

    function buildStep(step, wasOpen) {
      const id = String(step.id ?? "");
      const status = step.status || "pending";
      const retries = Number(step.retries || 0);
      const meta = el(
        "span",
        { class: "step-meta" },
        el("span", { dataset: { field: "duration" } }, formatDuration(step.duration_s)),
        retries ? el("span", { class: "step-retries" }, `${retries} ${retries === 1 ? "retry" : "retries"}`) : null,
        Number(step.attempt || 1) > 1 ? el("span", { class: "step-retries" }, `attempt ${step.attempt}`) : null,
      );
      const head = el(
        "div",
        { class: "step-head" },
        el("span", { class: "step-name" }, step.name || id),
        el("code", { class: "step-action" }, step.action ?? ""),
        badge(status),
        meta,
        stepShotLink(step, step.screenshot_url || stepShots.get(id)),
      );
      const body = el("div", { class: "step-body" }, head);
      if (step.error) body.append(el("p", { class: "step-error" }, errorText(step.error)));
      body.append(stepDetail(step, step.screenshot_url || stepShots.get(id)));
      const captured = step.captured;
      const hasCaptured = captured !== null && captured !== undefined && (!isObject(captured) || Object.keys(captured).length > 0);
      if (hasCaptured) {
        const count = isObject(captured) ? Object.keys(captured).length : Array.isArray(captured) ? captured.length : 1;
        const details = el(
          "details",
          { class: "captured" },
          el("summary", {}, `Captured values (${count})`),
          el("pre", { class: "json" }, prettyJSON(captured)),
        );
        details.open = Boolean(wasOpen);
        body.append(details);
      }
      return el(
        "li",
        { class: `step step-${status}`, dataset: { stepId: id, status, retries: String(retries) } },
        el("span", { class: "step-marker", "aria-hidden": "true" }),
        body,
      );
    }

    function findStep(id) {
      return $(`[data-role="steps"] > li[data-step-id="${CSS.escape(String(id))}"]`, root);
    }

    function upsertStep(step) {
      const list = role("steps");
      if (!list || !isObject(step) || step.id === undefined || step.id === null) return null;
      for (const empty of $$(":scope > li.empty", list)) empty.remove();
      const old = findStep(step.id);
      const wasOpen = old ? Boolean($("details.captured", old)?.open) : false;
      const node = buildStep(step, wasOpen);
      const oldDetail = old && $('[data-role="step-detail"]', old);
      if (oldDetail && !oldDetail.hidden) {
        const detail = $('[data-role="step-detail"]', node);
        if (detail) detail.hidden = false;
        node.classList.add("is-open");
      }
      if (old) old.replaceWith(node);
      else list.append(node);
      return node;
    }

    function renderSteps(steps) {
      const list = role("steps");
      if (!list || !Array.isArray(steps)) return;
      const keep = new Set(steps.map((s) => String(s.id)));
      for (const li of $$(":scope > li", list)) {
        if (li.classList.contains("empty") || !keep.has(li.dataset.stepId)) li.remove();
      }
      // Upsert in order, then put nodes in the job's order.
      const nodes = steps.map((step) => upsertStep(step)).filter(Boolean);
      for (const node of nodes) list.append(node);
      if (steps.length === 0) list.append(el("li", { class: "empty", dataset: { role: "empty" } }, "No steps have run yet."));
    }

    function attachStepShot(stepId, url) {
      if (stepId === undefined || stepId === null) return;
      stepShots.set(String(stepId), url);
      const li = findStep(stepId);
      if (!li) return;
      const head = $(".step-head", li);
      const old = $('[data-role="step-shot"]', li);
      const name = $(".step-name", li)?.textContent || stepId;
      const link = stepShotLink({ id: stepId, name }, url);
      if (!link) return;
      if (old) old.replaceWith(link);
      else if (head) head.append(link);
    }

    // --- live screenshot

    /** Show the live view's image (already set to `href`) with its link and caption. */
    function reveal(img, link, href, caption) {
      img.hidden = false;
      link.href = href;
      link.hidden = false;
      const empty = role("live-screenshot-empty");
      if (empty) empty.hidden = true;
      const cap = role("live-screenshot-caption");
      if (cap) {
        clear(cap);
        append(cap, caption);
      }
    }

    function setLiveShot(url, at, caption) {
      const href = safeUrl(url);
      if (!href) return;
      const img = role("live-screenshot-img");
      const link = role("live-screenshot-link");
      if (!img || !link) return;
      if (img.getAttribute("src") !== href) {
        img.classList.remove("is-fresh");
        img.src = href;
        void img.offsetWidth; // restart the fade-in
        img.classList.add("is-fresh");
      }
      reveal(img, link, href, [caption || "", caption && at ? " · " : "", at ? timeEl(at) : ""]);
      liveShotAt = parseTime(at) || new Date();
    }

    // Live frames: one loads at a time, always the newest; frames that arrive meanwhile replace
    // the one waiting, so a slow connection sees fewer frames, never older ones.
    let frameLoading = false;
    let frameNext = null;
    function showFrame(data) {
      frameNext = data;
      if (!frameLoading) loadFrame();
    }
    function loadFrame() {
      const data = frameNext;
      frameNext = null;
      const href = data && safeUrl(data.url);
      if (!href) return;
      frameLoading = true;
      const next = new Image();
      next.onload = () => {
        frameLoading = false;
        setLiveFrame(href, data);
        loadFrame();
      };
      next.onerror = () => {
        frameLoading = false;
        loadFrame();
      };
      next.src = href;
    }
    function setLiveFrame(href, data) {
      const img = role("live-screenshot-img");
      const link = role("live-screenshot-link");
      if (!img || !link) return;
      img.classList.remove("is-fresh");
      img.src = href;
      img.dataset.frameAt = data.at || "";
      img.dataset.frameShownAt = String(Date.now());
      reveal(img, link, href, [el("span", { class: "live-dot" }, "Live"), data.step_id ? ` · step ${data.step_id}` : ""]);
      const approvalLive = role("approval-live");
      if (approvalLive) {
        approvalLive.src = href;
        approvalLive.hidden = false;
      }
    }

    function latestScreenshot(artifacts) {
      let best = null;
      for (const a of artifacts || []) {
        if (!a || a.kind !== "screenshot") continue;
        if (!best || (parseTime(a.created_at)?.getTime() ?? 0) >= (parseTime(best.created_at)?.getTime() ?? 0)) best = a;
      }
      return best;
    }

    // --- artifacts, records, io, audit

    function renderArtifacts(artifacts) {
      const list = role("artifacts");
      if (!list || !Array.isArray(artifacts)) return;
      clear(list);
      if (artifacts.length === 0) list.append(el("li", { class: "empty" }, "No artifacts yet."));
      for (const a of artifacts) {
        const href = safeUrl(a.url);
        list.append(
          el(
            "li",
            { class: "artifact" },
            el("span", { class: `artifact-kind kind-${a.kind || "file"}` }, a.kind || "file"),
            href
              ? el("a", { class: "artifact-name", href, download: a.name || "" }, a.name || a.id || "artifact")
              : el("span", { class: "artifact-name" }, a.name || a.id || "artifact"),
            el("span", { class: "artifact-meta muted" }, formatSize(a.size), " · ", timeEl(a.created_at)),
          ),
        );
      }
      const shot = latestScreenshot(artifacts);
      if (shot) {
        const at = parseTime(shot.created_at);
        if (!liveShotAt || (at && at >= liveShotAt)) setLiveShot(shot.url, shot.created_at, shot.name);
      }
    }

    function recordRow(r) {
      const name = el("td", {}, el("span", { class: "strong" }, r.record_name || r.record_id || "—"));
      if (r.record_name && r.record_id) name.append(el("div", { class: "sub mono" }, r.record_id));
      const hasResult = r.result !== null && r.result !== undefined && !(isObject(r.result) && Object.keys(r.result).length === 0);
      const shot = r.screenshot_url ? el("a", { href: r.screenshot_url, target: "_blank", rel: "noopener" }, "screenshot") : "";
      const row = el(
        "tr",
        { "data-sequence": String(r.sequence ?? ""), "data-status": r.status || "" },
        el("td", { class: "num" }, r.sequence ?? ""),
        name,
        el("td", {}, badge(r.status)),
        el("td", {}, hasResult ? el("code", { class: "inline-json", title: JSON.stringify(r.result) }, JSON.stringify(r.result)) : el("span", { class: "muted" }, "—")),
        el("td", { class: "error-text" }, errorText(r.error)),
        el("td", {}, timeEl(r.processed_at), shot ? " " : "", shot),
      );
      const wanted = role("records-filter")?.value || "";
      row.hidden = Boolean(wanted) && r.status !== wanted;
      return row;
    }

    // The job object holds the first page of its records; the rest come a page at a time from
    // /api/v1/jobs/{id}/records. While the table holds them all, the filter hides rows; once it does
    // not (a next page, or a page the server filtered), the filter asks the server.
    const records = {
      next: role("records-section")?.dataset.recordsNext || null, // the next page's URL
      serverFiltered: false, // the table holds what the server filtered, not every record
      touched: false, // paged or filtered here: a refetch of the job does not reset the table
      total: Number(role("records-section")?.dataset.recordsTotal || 0) || null,
    };

    function showRecordsMore() {
      const more = role("records-more");
      if (!more) return;
      more.hidden = !records.next;
      const shown = role("records-shown");
      const count = $$("tr[data-sequence]", role("records")).length;
      if (shown) shown.textContent = records.total === null ? `${count} records shown` : `${count} of ${records.total} records shown`;
    }

    function renderRecords(list, page) {
      const section = role("records-section");
      const body = role("records");
      if (!section || !body || !Array.isArray(list)) return;
      section.hidden = list.length === 0 && !records.serverFiltered;
      clear(body);
      for (const r of list) body.append(recordRow(r));
      if (isObject(page)) {
        records.next = page.next || null;
        records.total = page.total ?? null;
      }
      showRecordsMore();
    }

    function addRecordRows(list) {
      const body = role("records");
      for (const r of list) {
        const old = $(`tr[data-sequence="${CSS.escape(String(r.sequence))}"]`, body);
        if (old) old.replaceWith(recordRow(r));
        else body.append(recordRow(r));
      }
    }

    async function loadRecords(url, replace) {
      const res = await api("GET", url);
      if (!res.ok || !isObject(res.data) || !Array.isArray(res.data.items)) {
        toast(res.data?.error || "The records could not be loaded.", "error");
        return;
      }
      if (replace) clear(role("records"));
      addRecordRows(res.data.items);
      records.next = res.data.next || null;
      records.total = res.data.total ?? records.total;
      showRecordsMore();
    }

    const moreRecords = role("records-more-button");
    moreRecords?.addEventListener("click", async () => {
      if (!records.next) return;
      records.touched = true;
      moreRecords.disabled = true;
      try {
        await loadRecords(records.next, false);
      } finally {
        moreRecords.disabled = false;
      }
    });

    const RECORDS_PAGE = 100;

    /** A record finished (SSE `record`): add or replace its row without refetching the whole job.
     *  The table grows a page at a time: past a full page, new records wait for "Show more records". */
    function upsertRecord(r, counts) {
      const section = role("records-section");
      const body = role("records");
      if (!section || !body || !isObject(r)) return;
      if (isObject(counts) && counts.total !== undefined && !records.serverFiltered) records.total = counts.total;
      const old = $(`tr[data-sequence="${CSS.escape(String(r.sequence))}"]`, body);
      const wanted = role("records-filter")?.value || "";
      const shown = $$("tr[data-sequence]", body).length;
      if (old) old.replaceWith(recordRow(r));
      else if (records.serverFiltered && wanted && r.status !== wanted) return;
      else if (!records.next && shown % RECORDS_PAGE === 0 && shown > 0) {
        const status = records.serverFiltered && wanted ? `status=${encodeURIComponent(wanted)}&` : "";
        records.next = `${base}/records?${status}start=${shown}&limit=${RECORDS_PAGE}`;
      } else if (!records.next) body.append(recordRow(r));
      section.hidden = false;
      showRecordsMore();
    }

    /** A child job started or moved on (SSE `child`): its line links to it and shows its status. */
    function upsertChild(c) {
      const section = role("children-section");
      const list = role("children");
      if (!section || !list || !isObject(c)) return;
      section.hidden = false;
      const item = el(
        "li",
        { "data-child-id": String(c.id) },
        el("a", { class: "mono", href: `/jobs/${encodeURIComponent(c.id)}` }, `${c.runbook} · ${c.id}`),
        " ",
        badge(c.status),
      );
      const old = $(`li[data-child-id="${CSS.escape(String(c.id))}"]`, list);
      if (old) old.replaceWith(item);
      else list.append(item);
    }

    const recordsFilter = role("records-filter");
    if (recordsFilter) {
      recordsFilter.addEventListener("change", () => {
        records.touched = true;
        if (!records.next && !records.serverFiltered) {
          for (const row of $$("tr[data-sequence]", role("records"))) {
            row.hidden = Boolean(recordsFilter.value) && row.dataset.status !== recordsFilter.value;
          }
          return;
        }
        records.serverFiltered = true;
        const status = recordsFilter.value ? `status=${encodeURIComponent(recordsFilter.value)}&` : "";
        loadRecords(`${base}/records?${status}limit=${RECORDS_PAGE}`, true);
      });
    }

    function renderIO(job) {
      const inputs = role("inputs");
      if (inputs && "inputs" in job) inputs.textContent = prettyJSON(job.inputs);
      const outputs = role("outputs");
      if (outputs && "outputs" in job) outputs.textContent = prettyJSON(job.outputs);
      const data = role("data");
      if (data && "data" in job) data.textContent = prettyJSON(job.data);
    }

    function renderAudit(audit) {
      const body = role("audit");
      if (!body || !Array.isArray(audit)) return;
      clear(body);
      if (audit.length === 0) {
        body.append(el("tr", { class: "empty-row" }, el("td", { colspan: "5" }, el("div", { class: "empty" }, "No actions yet."))));
      }
      for (const e of audit) {
        body.append(
          el(
            "tr",
            {},
            el("td", {}, timeEl(e.at)),
            el("td", {}, e.actor || "—"),
            el("td", {}, el("span", { class: "chip" }, e.action ?? "")),
            el("td", {}, e.comment || ""),
            el("td", {}, e.evidence ? el("code", { class: "mono small", title: "SHA-256 of the screenshot the approver was shown" }, `sha256:${e.evidence}`) : ""),
          ),
        );
      }
    }

    // --- log

    function appendLog(data) {
      const list = role("log");
      if (!list) return;
      const empty = role("log-empty");
      if (empty) empty.remove();
      const level = String(data.level || "info").toLowerCase();
      const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
      const now = data.at ? parseTime(data.at) : new Date();
      list.append(
        el(
          "li",
          { class: `log-${level.replace(/[^a-z]/g, "")}` },
          el("span", { class: "log-time" }, now ? `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}` : ""),
          el("span", { class: "log-level" }, level),
          el("span", { class: "log-message" }, data.message ?? ""),
        ),
      );
      while (list.childElementCount > 500) list.firstElementChild.remove();
      if (nearBottom) list.scrollTop = list.scrollHeight;
    }

    // --- whole job

    function renderJob(job) {
      if (!isObject(job) || (job.id !== undefined && String(job.id) !== String(jobId))) return;
      setStatus(job.status);
      setSummary(job.summary);
      setError(job.error);
      setMeta(job);
      if (job.status === "waiting_for_approval") showApproval(job.approval, job.status);
      renderSteps(job.steps);
      renderMetrics(job.finished_at ? job.metrics : liveMetrics(job), job.record_counts, job.duration_s);
      startedAt = parseTime(job.started_at);
      finished = Boolean(job.finished_at);
      if (!records.touched) renderRecords(job.records, job.records_page);
      for (const c of job.children || []) upsertChild(c);
      renderIO(job);
      renderArtifacts(job.artifacts);
      const video = (job.artifacts || []).filter((a) => a && a.kind === "video").pop();
      if (video) showVideo(video.url);
      const sinceEnd = job.finished_at ? Date.now() - (parseTime(job.finished_at)?.getTime() ?? 0) : 0;
      awaitingVideo = Boolean(job.video) && !video && Boolean(job.started_at) && sinceEnd < 120000;
      renderAudit(job.audit);
      localizeTimes(root);
    }

    async function refetch() {
      const res = await api("GET", base);
      if (res.ok) renderJob(res.data);
    }
    const scheduleRefetch = throttle(refetch, 1000);

    // --- actions

    function showVideo(url) {
      const video = role("video");
      const card = role("video-card");
      const href = safeUrl(url);
      if (!video || !card || !href) return;
      if (video.getAttribute("src") !== href) video.src = href;
      card.hidden = false;
    }

    // A click on a step opens its details; "Play from" seeks the session video to the step.
    root.addEventListener("click", (event) => {
      const seek = event.target.closest("button[data-seek]");
      if (seek) {
        const video = role("video");
        if (video) {
          video.currentTime = Number(seek.dataset.seek);
          video.scrollIntoView({ block: "nearest" });
          video.play().catch(() => {});
        }
        return;
      }
      const head = event.target.closest(".step-head");
      if (!head || event.target.closest("a")) return;
      const li = head.closest("li[data-step-id]");
      const detail = li && $('[data-role="step-detail"]', li);
      if (!detail) return;
      detail.hidden = !detail.hidden;
      li.classList.toggle("is-open", !detail.hidden);
      const captured = $("details.captured", li);
      if (captured) captured.open = !detail.hidden;
    });

    root.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || !root.contains(button)) return;
      event.preventDefault();
      const action = button.dataset.action;
      const buttons = $$("button[data-action]", root);
      for (const b of buttons) b.disabled = true;
      button.classList.add("is-busy");
      try {
        if (action === "rerun") {
          const query = button.dataset.query ? `?${button.dataset.query}` : "";
          const res = await api("POST", `${base}/rerun${query}`, {});
          if (res.ok && res.data?.id !== undefined) {
            window.location.href = `/jobs/${encodeURIComponent(res.data.id)}`;
            return;
          }
          toast(res.data?.error || "The job could not be run again.", "error");
          return;
        }
        // The status the person saw: if someone else acted first, this action is refused (409).
        const body = { expected_status: root.dataset.status };
        // and the approval request the person saw: a decision never lands on a later one
        if ((action === "approve" || action === "reject") && root.dataset.approvalRequestedAt) {
          body.expected_request = root.dataset.approvalRequestedAt;
        }
        const comment = role("comment");
        if ((action === "approve" || action === "reject") && comment && comment.value.trim()) body.comment = comment.value.trim();
        const res = await api("POST", `${base}/${action}`, body);
        if (res.ok) {
          toast(`${ACTION_LABELS[action] || action}: done.`, "ok", 3000);
          if (isObject(res.data) && res.data.status) renderJob(res.data);
        } else {
          toast(res.data?.error || `${ACTION_LABELS[action] || action} failed (${res.status}).`, "error", 7000);
          if (res.status === 409 && res.data?.status) setStatus(res.data.status);
        }
      } finally {
        for (const b of $$("button[data-action]", root)) b.disabled = false;
        button.classList.remove("is-busy");
      }
    });

    // --- live

    setStatus(root.dataset.status);
    conn = connect(`${base}/events`, {
      snapshot: renderJob,
      status(data) {
        if (String(data.job_id ?? jobId) !== String(jobId)) return;
        setStatus(data.status);
        scheduleRefetch();
      },
      step(data) {
        const step = isObject(data.step) ? data.step : data;
        upsertStep(step);
        if (!finished) renderMetrics(liveMetrics({ steps: $$('[data-role="steps"] > li[data-step-id]', root).map((li) => ({ status: li.dataset.status, retries: Number(li.dataset.retries || 0) })) }));
        localizeTimes(root);
        scheduleRefetch();
      },
      screenshot(data) {
        if (data.live) {
          showFrame(data);
          return;
        }
        setLiveShot(data.url, data.at, data.step_id ? `Step ${data.step_id}` : "");
        attachStepShot(data.step_id, data.url);
      },
      artifact(data) {
        scheduleRefetch();
        if (isObject(data.artifact) && data.artifact.kind === "video") showVideo(data.artifact.url);
      },
      approval(data) {
        showApproval(data, "waiting_for_approval");
        const panel = role("approval-panel");
        if (panel) panel.hidden = false;
      },
      log: appendLog,
      child(data) {
        upsertChild(data.child);
      },
      record(data) {
        upsertRecord(data.record, data.record_counts);
        renderMetrics(null, data.record_counts);
      },
      report(data) {
        finished = true;
        renderMetrics(data.metrics, data.record_counts, data.duration_s);
        if ("summary" in data) setSummary(data.summary);
        if (data.status) setStatus(data.status);
        scheduleRefetch();
      },
    });
  }

  // ---------------------------------------------------------------- run form

  function readFileAsBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  function initRunForm(form) {
    const name = form.dataset.runbook;
    const general = $('[data-role="form-error"]', form);
    const submit = $('[data-role="run-button"]', form) || $('button[type="submit"]', form);

    const fieldError = (field) => $(`[data-error-for="${CSS.escape(field)}"]`, form);

    function clearErrors() {
      for (const node of $$("[data-error-for]", form)) {
        node.textContent = "";
        node.hidden = true;
        node.closest(".field")?.classList.remove("has-error");
      }
      if (general) {
        clear(general);
        general.hidden = true;
      }
    }

    function showGeneral(message) {
      if (!general) return toast(message, "error");
      general.append(el("div", {}, message));
      general.hidden = false;
    }

    function showFieldError(key, message) {
      const candidates = [key, key.replace(/^inputs[.\/]/, ""), key.split(/[.\/]/).pop()];
      for (const candidate of candidates) {
        const node = candidate ? fieldError(candidate) : null;
        if (node) {
          node.textContent = message;
          node.hidden = false;
          node.closest(".field")?.classList.add("has-error");
          return true;
        }
      }
      showGeneral(`${key}: ${message}`);
      return false;
    }

    async function collect() {
      const inputs = {};
      let valid = true;
      for (const input of $$("[data-input]", form)) {
        const field = input.dataset.input;
        const type = input.dataset.type || "string";
        if (type === "boolean" && input.type === "checkbox") {
          inputs[field] = input.checked;
          continue;
        }
        if (type === "file") {
          const file = input.files && input.files[0];
          if (file) inputs[field] = { filename: file.name, content_type: file.type || "application/octet-stream", data_base64: await readFileAsBase64(file) };
          continue;
        }
        if (input.validity && input.validity.badInput) {
          showFieldError(field, "Enter a number.");
          valid = false;
          continue;
        }
        const raw = input.value;
        if (raw.trim() === "") continue; // left empty: the runbook's default (or a required-field error) applies
        if (type === "integer" || type === "number") {
          const value = Number(raw);
          if (Number.isNaN(value)) {
            showFieldError(field, "Enter a number.");
            valid = false;
          } else inputs[field] = value;
        } else if (type === "boolean") {
          inputs[field] = raw === "true";
        } else if (type === "records") {
          try {
            const value = JSON.parse(raw);
            if (!Array.isArray(value)) throw new Error("not a list");
            inputs[field] = value;
          } catch {
            showFieldError(field, "Enter a JSON list of objects, e.g. [{\"id\": \"1\"}].");
            valid = false;
          }
        } else {
          inputs[field] = raw;
        }
      }
      return valid ? inputs : null;
    }

    /** Records inputs given as a file: the job is then sent as a form, the file parsed by the server. */
    function recordFiles() {
      return $$("input[data-records-file]", form).filter((input) => input.files && input.files[0]);
    }

    async function postForm(url, body) {
      const data = new FormData();
      const inputs = { ...body.inputs };
      for (const input of recordFiles()) {
        delete inputs[input.dataset.recordsFile];
        data.append(input.dataset.recordsFile, input.files[0]);
      }
      data.append("inputs", JSON.stringify(inputs));
      if (body.priority) data.append("priority", body.priority);
      const headers = { Accept: "application/json", "X-Source": "ui" };
      const token = csrfToken();
      if (token) headers["X-CSRF-Token"] = token;
      try {
        const response = await fetch(url, { method: "POST", headers, body: data, credentials: "same-origin" });
        const parsed = (response.headers.get("Content-Type") || "").includes("json") ? await response.json() : null;
        return { ok: response.ok, status: response.status, data: parsed || { error: `The server answered ${response.status}.` } };
      } catch {
        return { ok: false, status: 0, data: { error: "The server could not be reached. Check your connection and try again." } };
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      const inputs = await collect();
      if (!inputs) return;
      const body = { inputs };
      const priority = $('[data-option="priority"]', form);
      if (priority && priority.value) body.priority = priority.value;
      if (submit) {
        submit.disabled = true;
        submit.classList.add("is-busy");
      }
      try {
        const url = `/api/v1/runbooks/${encodeURIComponent(name)}/jobs`;
        const res = recordFiles().length ? await postForm(url, body) : await api("POST", url, body);
        if (res.ok && res.data && res.data.id !== undefined) {
          window.location.href = `/jobs/${encodeURIComponent(res.data.id)}`;
          return;
        }
        const fields = isObject(res.data?.fields) ? res.data.fields : {};
        const keys = Object.keys(fields);
        for (const key of keys) showFieldError(key, errorText(fields[key]));
        if (keys.length === 0 || res.status !== 422) showGeneral(res.data?.error || `The job could not be created (${res.status}).`);
        const first = $(".field.has-error input, .field.has-error select, .field.has-error textarea", form);
        if (first) first.focus();
      } finally {
        if (submit) {
          submit.disabled = false;
          submit.classList.remove("is-busy");
        }
      }
    });
  }

  // ---------------------------------------------------------------- schedules

  /** Pause / Resume of a schedule on the runbook page: PATCH its `active`, then show the new state. */
  function initScheduleButton(button) {
    button.addEventListener("click", async () => {
      const active = button.dataset.active === "true";
      button.disabled = true;
      const res = await api("PATCH", button.dataset.scheduleUrl, { active: !active });
      button.disabled = false;
      if (!res.ok) {
        toast(res.data?.error || `The schedule could not be changed (${res.status}).`, "error");
        return;
      }
      window.location.reload();
    });
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
})();
