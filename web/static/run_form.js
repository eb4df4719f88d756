/* Runbook Orchestrator: the run form of a runbook's page (typed inputs, files, field errors) and its
 * schedules' Pause / Resume buttons. */

import { $, $$, UNREACHABLE, api, csrfToken, el, isObject, toast } from "./kit.js";

const errorText = (e) => (isObject(e) ? e.message ?? JSON.stringify(e) : e ?? "");

function readFileAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function initRunForm(form) {
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
      general.replaceChildren();
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
      return { ok: false, status: 0, data: { error: UNREACHABLE } };
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

/** Pause / Resume of a schedule on the runbook page: PATCH its `active`, then show the new state. */
export function initScheduleButton(button) {
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
