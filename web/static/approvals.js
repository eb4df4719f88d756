/* Runbook Orchestrator: the /approvals page (the approval inbox). Its rows are fetched again (GET
 * /approvals/rows, the partial the page was rendered with) whenever a job's status or approval changes
 * (/api/v1/events); Approve and Reject post the decision with the row's comment, as the job page does:
 * with the session's CSRF token, and the request the person saw (a later one is never decided here). */

import { connect } from "./app.js";
import { $, $$, api, toast } from "./kit.js";
import { batcher, fetchPieces, swap } from "./pieces.js";

/** The header's count of approvals waiting for this person, kept as the rows change. */
function showCount(total) {
  const badge = $('[data-role="approvals-count"]');
  if (!badge || Number.isNaN(total)) return;
  badge.textContent = String(total);
  badge.hidden = total === 0;
}

function start() {
  const table = $("table.inbox-table");
  if (!table) return;
  const rows = () => $('tbody[data-live="approvals"]', table);
  const refresh = batcher(async () => {
    const old = rows();
    const [fresh] = await fetchPieces(old.dataset.rows);
    if (!fresh) return;
    swap(old, fresh);
    showCount(Number(fresh.dataset.total));
  }, 1000);

  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    const row = button?.closest("tr[data-job-id]");
    if (!row) return;
    event.preventDefault();
    const action = button.dataset.action;
    const buttons = $$("button[data-action]", row);
    for (const b of buttons) b.disabled = true;
    button.classList.add("is-busy");
    const body = { expected_status: "waiting_for_approval" };
    if (row.dataset.requestedAt) body.expected_request = row.dataset.requestedAt;
    const comment = $('[data-role="comment"]', row)?.value.trim();
    if (comment) body.comment = comment;
    try {
      const res = await api("POST", `/api/v1/jobs/${encodeURIComponent(row.dataset.jobId)}/${action}`, body);
      const label = button.textContent.trim();
      if (res.ok) toast(`${label}: done.`, "ok", 3000);
      else toast(res.data?.error || `${label} failed (${res.status}).`, "error", 7000);
    } finally {
      for (const b of buttons) b.disabled = false;
      button.classList.remove("is-busy");
      refresh("rows");
    }
  });

  connect("/api/v1/events", { status: () => refresh("rows"), approval: () => refresh("rows") });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
