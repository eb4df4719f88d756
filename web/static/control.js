/* Taking the wheel (issue 20): while a job waits on its page (paused, or waiting for approval), a person
 * with job:control takes control of its live browser from the job page. The live frame becomes the
 * surface: a click there clicks the page at the same spot, the wheel scrolls it and keys typed while
 * the frame has focus go to it (POST /api/v1/jobs/{id}/input, one request at a time, in order).
 * Give back, Resume (the header's) or the job going on end it. Standard DOM events only; nothing typed is kept here
 * longer than the ~50 ms it waits to be sent with the characters typed next to it. */

import { $, api, el, toast } from "./kit.js";

/** The statuses in which a job keeps its page and may be taken over. */
const WAITING = new Set(["paused", "waiting_for_approval"]);
/** Characters typed within this many ms go as one `type` input. */
const TYPE_BATCH_MS = 50;
/** At most one `scroll` input per this many ms; the wheel's movement meanwhile is added up. */
const SCROLL_EVERY_MS = 100;
const MAX_TEXT = 1000; // the API's limit for one `type` input
/** KeyboardEvent.key values sent as Playwright key names (orchestrator/schemas/control.py). */
const NAMED = new Set(["Enter", "Tab", "Backspace", "Delete", "Escape", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown", "Insert"]);
const FUNCTION_KEY = /^F([1-9]|1[0-2])$/;
const LETTER_OR_DIGIT = /^[A-Za-z0-9]$/;
/** Pixels per wheel unit when the browser counts in lines or pages (WheelEvent.deltaMode 1 and 2). */
const WHEEL_UNIT = [1, 40, 800];

/** The Playwright key name for a keydown (with its modifiers as prefixes), or null if it is not one the API takes. */
export function keyName(event) {
  const base = event.key === " " ? "Space" : event.key;
  if (!NAMED.has(base) && base !== "Space" && !FUNCTION_KEY.test(base) && !LETTER_OR_DIGIT.test(base)) return null;
  const prefixes = [["shiftKey", "Shift"], ["ctrlKey", "Control"], ["altKey", "Alt"], ["metaKey", "Meta"]];
  return [...prefixes.filter(([flag]) => event[flag]).map(([, name]) => name), base].join("+");
}

/** A typed character (Shift, or Alt alone as on a Mac keyboard, may have made it), or null. */
function typedText(event) {
  if (event.ctrlKey || event.metaKey || [...event.key].length !== 1) return null;
  if (event.altKey && LETTER_OR_DIGIT.test(event.key)) return null; // Alt+a: a shortcut, sent as a key
  return event.key;
}

/**
 * The control bar and surface of the job page's live view. `base` is the job's API URL, `status()`
 * its status as the page shows it now, `showFrame` shows a live frame ({url, at}); call `sync()`
 * whenever the page's pieces changed.
 */
export function initControl(section, base, status, showFrame) {
  const role = (name) => $(`[data-role="${name}"]`, section);
  const bar = section && role("control-bar");
  const img = bar && role("live-screenshot-img");
  if (!img) return { sync() {} };
  const frame = img.closest("a") || img.parentElement;
  const alt = img.getAttribute("alt") || "";
  let held = false;
  let chain = Promise.resolve();
  const typed = { text: "", timer: null };
  const wheel = { dx: 0, dy: 0, timer: null };

  function show() {
    const waiting = WAITING.has(status());
    bar.hidden = !waiting;
    role("control-take").hidden = held;
    role("control-state").hidden = role("control-give").hidden = !held;
  }

  // A page that does not change sends no new frame: show the latest one (kept a minute after the
  // last watcher saw it), so there is a frame to click on before anything moves.
  function latestFrame() {
    if (!img.dataset.frameAt) showFrame({ url: `${base}/frame?latest=${Date.now()}`, at: new Date().toISOString() });
  }

  function enter(state) {
    held = true;
    section.classList.add("is-controlling");
    role("control-state").textContent = "You are in control";
    role("control-state").title = state?.idle_expires_in_s ? `Given back by itself after ${Math.round(state.idle_expires_in_s)} s without input` : "";
    img.tabIndex = 0;
    img.setAttribute("alt", "The job's browser: you are in control. Clicks, the wheel and keys typed here go to it.");
    show();
    img.focus();
    latestFrame();
  }

  function leave() {
    held = false;
    section.classList.remove("is-controlling");
    clearTimeout(typed.timer);
    clearTimeout(wheel.timer);
    Object.assign(typed, { text: "", timer: null });
    Object.assign(wheel, { dx: 0, dy: 0, timer: null });
    img.removeAttribute("tabindex");
    img.setAttribute("alt", alt);
    show();
  }

  /** Send one input after those sent before it have been answered; a refusal ends control here. */
  function send(input) {
    chain = chain.then(async () => {
      if (!held) return;
      const res = await api("POST", `${base}/input`, input);
      if (res.ok || !held) return;
      if (res.status === 409 || res.status === 403) leave();
      toast(res.data?.error || `The input was refused (${res.status}).`, "error", 7000);
    });
  }

  function flushTyped() {
    clearTimeout(typed.timer);
    typed.timer = null;
    if (typed.text) send({ type: "type", text: typed.text });
    typed.text = "";
  }

  function flushWheel() {
    wheel.timer = null;
    if (wheel.dx || wheel.dy) send({ type: "scroll", dx: Math.round(wheel.dx), dy: Math.round(wheel.dy) });
    wheel.dx = wheel.dy = 0;
  }

  /** Where on the page a point of the shown frame is: the frame's own size is the viewport's, in CSS pixels. */
  function pagePoint(event) {
    const box = img.getBoundingClientRect();
    if (!box.width || !box.height || !img.naturalWidth) return null;
    const x = ((event.clientX - box.left) * img.naturalWidth) / box.width;
    const y = ((event.clientY - box.top) * img.naturalHeight) / box.height;
    const inside = (v, most) => Math.min(Math.max(Math.round(v), 0), most - 1);
    return { x: inside(x, img.naturalWidth), y: inside(y, img.naturalHeight), left: event.clientX - box.left, top: event.clientY - box.top };
  }

  function mark(point) {
    const dot = el("span", { class: "control-marker", "aria-hidden": "true" });
    dot.style.left = `${point.left}px`;
    dot.style.top = `${point.top}px`;
    frame.append(dot);
    setTimeout(() => dot.remove(), 900);
  }

  async function take() {
    const res = await api("POST", `${base}/control`);
    if (res.ok) return enter(res.data);
    toast(res.data?.error || `Control could not be taken (${res.status}).`, "error", 7000);
  }

  async function giveBack() {
    flushTyped();
    flushWheel();
    await chain; // what was typed reaches the page before control goes back
    leave();
    const res = await api("DELETE", `${base}/control`);
    if (!res.ok) toast(res.data?.error || `Control could not be given back (${res.status}).`, "error", 7000);
  }

  role("control-take").addEventListener("click", take);
  role("control-give").addEventListener("click", giveBack);

  // The surface: only while in control; the frame's link does not open then.
  img.addEventListener("mousedown", (event) => held && event.preventDefault());
  img.addEventListener("dragstart", (event) => held && event.preventDefault());
  img.addEventListener("click", (event) => {
    if (!held) return;
    event.preventDefault();
    img.focus();
    if (!img.dataset.frameAt) return toast("Wait for the live view to show the page.", "info", 3000);
    const point = pagePoint(event);
    if (!point) return;
    flushTyped();
    mark(point);
    send({ type: "click", x: point.x, y: point.y });
  });
  img.addEventListener(
    "wheel",
    (event) => {
      if (!held) return;
      event.preventDefault();
      const box = img.getBoundingClientRect();
      const scale = (WHEEL_UNIT[event.deltaMode] || 1) * (event.deltaMode ? 1 : img.naturalWidth / (box.width || img.naturalWidth || 1));
      wheel.dx += event.deltaX * scale;
      wheel.dy += event.deltaY * scale;
      if (!wheel.timer) wheel.timer = setTimeout(flushWheel, SCROLL_EVERY_MS);
    },
    { passive: false },
  );
  img.addEventListener("keydown", (event) => {
    if (!held || event.isComposing) return;
    const text = typedText(event);
    if (text !== null) {
      event.preventDefault();
      if (typed.text.length + text.length > MAX_TEXT) flushTyped();
      typed.text += text;
      clearTimeout(typed.timer);
      typed.timer = setTimeout(flushTyped, TYPE_BATCH_MS);
      return;
    }
    const key = keyName(event);
    if (key === null) return; // a modifier alone, or a key the page cannot be sent
    event.preventDefault();
    flushTyped();
    send({ type: "key", key });
  });

  show();
  if (WAITING.has(status())) latestFrame();
  return {
    /** The job's status may have changed: a job that went on (or ended) is no longer controlled. */
    sync() {
      if (held && !WAITING.has(status())) {
        leave();
        toast("The job went on: control has ended.", "info", 4000);
      }
      show();
    },
  };
}
