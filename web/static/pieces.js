/* Runbook Orchestrator: how a live page takes pieces from the server. Each piece of a page is one Jinja
 * partial (web/templates/_*.html) whose root names it (data-part="KEY"); GET /jobs/{id}/parts and
 * GET /jobs/rows answer pieces, each in a <template>, and they are swapped in here by that key. */

import { $, $$, localizeTimes, toLogin } from "./kit.js";

/** The pieces an answer of GET /jobs/{id}/parts or /jobs/rows holds: the root of each <template>. */
export async function fetchPieces(url) {
  const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" }).catch(() => null);
  if (response?.status === 401) toLogin();
  if (!response?.ok) return [];
  // this app's own partials, escaped by Jinja; a parsed document runs no script and loads nothing
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  return $$("template", doc).map((t) => t.content.firstElementChild).filter(Boolean);
}

/**
 * Calls run(keys) with every key asked for since the last call: one call at a time and then a pause of
 * `gap` ms, so a burst of events costs one request, and a piece asked for twice is fetched once.
 */
export function batcher(run, gap) {
  let keys = new Set();
  let busy = false;
  const pump = async () => {
    if (busy || keys.size === 0) return;
    busy = true;
    const taken = keys;
    keys = new Set();
    try {
      await run(taken);
    } catch (error) {
      console.error("orchestrator: refresh", error);
    }
    setTimeout(() => {
      busy = false;
      pump();
    }, gap);
  };
  return (...asked) => {
    for (const key of asked) keys.add(String(key));
    pump();
  };
}

/** A step opens (its screenshot, diagnostics, video jump, captured values) or closes when clicked. */
export function openStep(li, open) {
  const detail = $('[data-role="step-detail"]', li);
  if (!detail) return;
  detail.hidden = !open;
  li.classList.toggle("is-open", open);
  const captured = $("details.captured", li);
  if (captured) captured.open = open;
}

/**
 * Put a fresh piece where `old` is, keeping what the person does there: opened steps and <details>,
 * and the elements marked data-keep (a comment being typed, the live image), unless the piece hides.
 */
export function swap(old, fresh) {
  localizeTimes(fresh);
  if (old.isEqualNode(fresh)) return;
  const opened = new Set([old, ...$$(".is-open", old)].filter((n) => n.classList.contains("is-open")).map((n) => n.dataset.part));
  for (const node of [fresh, ...$$("[data-part]", fresh)]) if (opened.has(node.dataset.part)) openStep(node, true);
  const part = (node) => node.closest("[data-part]")?.dataset.part;
  const details = new Set($$("details[open]", old).map(part)); // a piece holds one <details> at most
  for (const d of $$("details", fresh)) if (details.has(part(d))) d.open = true;
  const focused = document.activeElement;
  for (const keep of fresh.hidden ? [] : $$("[data-keep]", fresh)) {
    const mine = $(`[data-keep="${keep.dataset.keep}"]`, old);
    if (mine) keep.replaceWith(mine);
  }
  old.replaceWith(fresh);
  if (focused && focused !== document.activeElement && fresh.contains(focused)) focused.focus();
}

/** Swap a piece in by its key; one the page lacks joins its list (data-into), if `fits` lets it. */
export function place(root, fresh, fits) {
  const old = $(`[data-part="${CSS.escape(fresh.dataset.part)}"]`, root);
  if (old) return swap(old, fresh);
  const list = fresh.dataset.into && $(`[data-role="${fresh.dataset.into}"]`, root);
  if (!list || (fits && !fits(fresh))) return;
  for (const empty of $$(":scope > .empty", list)) empty.remove();
  localizeTimes(fresh);
  list.append(fresh);
}
