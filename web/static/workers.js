/* Runbook Orchestrator: the /workers page fetches its rows again every few seconds (GET /workers/rows,
 * the same partial the page was rendered with), while the tab is visible. */

import { $, localizeTimes } from "./kit.js";
import { fetchPieces } from "./pieces.js";

const EVERY_MS = 3000;

async function refresh(table) {
  const tbody = $('tbody[data-live="workers"]', table);
  if (!tbody || document.hidden) return;
  const [fresh] = await fetchPieces(tbody.dataset.rows);
  if (!fresh) return;
  localizeTimes(fresh);
  if (!fresh.isEqualNode(tbody)) tbody.replaceWith(fresh);
}

function start() {
  const table = $("table.workers-table");
  if (!table) return;
  setInterval(() => refresh(table).catch((error) => console.error("orchestrator: workers", error)), EVERY_MS);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
