// The modelhaul page: the downloads, live through EventSource, and the buttons that
// control them. Plain JavaScript, no build step.
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("access_token")) sessionStorage.setItem("modelhaul-token", params.get("access_token"));
const token = sessionStorage.getItem("modelhaul-token") || "";
const list = document.getElementById("downloads");
const rows = new Map(); // id -> <li>

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `HTTP ${response.status}`);
  return data;
}

function bytes(n) {
  if (n == null) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function row(id) {
  let li = rows.get(id);
  if (!li) {
    li = document.getElementById("item").content.firstElementChild.cloneNode(true);
    li.dataset.id = id;
    li.querySelectorAll("button").forEach((b) =>
      b.addEventListener("click", () => act(id, b.dataset.action)));
    rows.set(id, li);
    list.prepend(li);
    document.getElementById("empty").hidden = true;
  }
  return li;
}

function render(d) {
  const id = d.id ?? d.task_id;
  const li = row(id);
  if (d.label) li.querySelector(".label").textContent = d.label;
  const state = d.state;
  const badge = li.querySelector(".state");
  badge.textContent = state;
  badge.dataset.state = state;
  li.dataset.state = state;
  const percent = d.percent ?? (state === "completed" ? 100 : 0);
  li.querySelector(".bar > div").style.width = `${percent}%`;
  li.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(percent)));
  li.querySelector(".percent").textContent = `${percent.toFixed(1)}%`;
  li.querySelector(".bytes").textContent = `${bytes(d.downloaded_bytes)} / ${bytes(d.total_bytes)}`;
  const speed = d.formatted_speed ?? d.speed;
  const eta = d.formatted_eta ?? d.eta;
  li.querySelector(".speed").textContent = state === "downloading" && speed ? speed : "";
  li.querySelector(".eta").textContent = state === "downloading" && eta ? `ETA ${eta}` : "";
  li.querySelector(".message").textContent = d.error || d.message || "";
  showWorker(li, id, d, state);
  const can = {
    pause: state === "pending" || state === "downloading",
    resume: state === "paused",
    retry: state === "failed",
    cancel: !["completed", "cancelled"].includes(state),
  };
  li.querySelectorAll("button").forEach((b) => { b.disabled = !can[b.dataset.action]; });
}

// Which worker (a process on some host) runs the download, and which host holds its files.
// Progress events do not carry them: a task seen starting is read once more for them.
function showWorker(li, id, d, state) {
  if ("worker" in d) li.dataset.worker = d.worker ? `${d.worker.host} (pid ${d.worker.pid})` : "";
  if ("files_host" in d) li.dataset.filesHost = d.files_host || "";
  const started = state === "downloading" && li.dataset.shown !== "downloading";
  li.dataset.shown = state;
  if (started && !("worker" in d)) {
    api("GET", `/api/v1/downloads/${id}`).then(render).catch(() => {});
  }
  const where = li.querySelector(".worker");
  if (state === "downloading" && li.dataset.worker) where.textContent = `worker: ${li.dataset.worker}`;
  else if (state === "completed" && li.dataset.filesHost) where.textContent = `files on ${li.dataset.filesHost}`;
  else where.textContent = "";
}

async function act(id, action) {
  try {
    const d = action === "cancel"
      ? await api("DELETE", `/api/v1/downloads/${id}`)
      : await api("POST", `/api/v1/downloads/${id}/${action}`);
    render(d);
  } catch (e) {
    rows.get(id).querySelector(".message").textContent = e.message;
  }
}

document.querySelectorAll("input[name=kind]").forEach((radio) =>
  radio.addEventListener("change", () => {
    document.querySelectorAll(".fields").forEach((f) => { f.hidden = f.dataset.kind !== radio.value; });
  }));

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const kind = form.kind.value;
  const body = {};
  if (kind === "url") body.url = form.url.value.trim();
  if (kind === "huggingface") {
    body.provider = "huggingface";
    body.model = form.repo.value.trim();
    if (form.file.value.trim()) body.allow_patterns = form.file.value.trim();
  }
  if (kind === "ollama") { body.provider = "ollama"; body.model = form.model.value.trim(); }
  if (form.dest.value.trim()) body.dest = form.dest.value.trim();
  const error = document.getElementById("form-error");
  try {
    const queued = await api("POST", "/api/v1/downloads", body);
    render(await api("GET", `/api/v1/downloads/${queued.id}`));
    error.hidden = true;
    form.reset();
    document.querySelectorAll(".fields").forEach((f) => { f.hidden = f.dataset.kind !== "url"; });
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
});

// The live limit: every process running downloads follows a change within a second.
function showLimit(limits) {
  const now = limits.now.rate == null ? "no limit" : `${limits.now.rate_text}/s`;
  const rule = limits.now.rule ? ` (schedule: ${limits.now.rule})` : "";
  document.getElementById("limit-now").textContent = `now: ${now}${rule}`;
}

document.getElementById("limit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = event.target.rate.value.trim();
  const error = document.getElementById("limit-error");
  try {
    showLimit(await api("PUT", "/api/v1/limits", { rate: text === "" ? null : text }));
    error.hidden = true;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
});

async function load() {
  api("GET", "/api/v1/limits").then(showLimit).catch(() => {});
  const page = await api("GET", "/api/v1/downloads?limit=200");
  page.downloads.reverse().forEach(render);
}

function follow() {
  const status = document.getElementById("connection");
  const source = new EventSource(`/api/v1/events${token ? `?access_token=${encodeURIComponent(token)}` : ""}`);
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.onmessage = async (event) => {
    const p = JSON.parse(event.data);
    if (p.task_id == null) return;
    if (!rows.has(p.task_id)) {
      try { render(await api("GET", `/api/v1/downloads/${p.task_id}`)); } catch { return; }
    }
    render(p);
  };
}

load().then(follow).catch((e) => {
  document.getElementById("connection").textContent = e.message;
});
