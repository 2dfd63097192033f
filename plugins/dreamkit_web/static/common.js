// What dreamkit's pages share: the token from the address, the API call, the error banner.
// Plain scripts (no build step): the names below are globals for the page's own script.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { "X-Dreamkit-Token": token, ...(options.headers || {}) } });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText}`);
  return body;
}
// For what a browser fetches by URL (<img>, EventSource): the only places ?token= is accepted.
const withToken = (url) => `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;

function showError(message) {
  const banner = $("banner");
  banner.textContent = message;
  banner.hidden = !message;
}

// The header's links between the pages keep the token.
function linkPages() {
  document.querySelectorAll("a.page-link").forEach((link) => { link.href = withToken(link.dataset.page); });
}

// The server's sample images as buttons in `box`; `pick({sample, url, name})` on a click.
// Returns the samples' names.
async function sampleButtons(box, pick) {
  const samples = await api("/api/samples");
  for (const sample of samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.title = sample.name;
    const img = document.createElement("img");
    img.src = withToken(`/api/samples/${encodeURIComponent(sample.name)}`);
    img.alt = sample.name;
    button.append(img);
    button.addEventListener("click", () => pick({ sample: sample.name, url: img.src, name: sample.name }));
    box.append(button);
  }
  return samples.map((sample) => sample.name);
}

// A drop zone with its hidden file input: a dropped, picked or keyboard-chosen file goes to `take`.
function wireDropzone(zone, input, take) {
  input.addEventListener("change", (e) => take(e.target.files[0]));
  for (const name of ["dragenter", "dragover"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); e.stopPropagation(); take(e.dataTransfer.files[0]); });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
}

// A picture with its name and a similarity under it (a search hit, a neighbour, a duplicate).
function scoredPicture(src, name, score, className) {
  const box = document.createElement("figure");
  box.className = className;
  const img = document.createElement("img");
  img.src = src;
  img.alt = name;
  img.title = `${name} · ${score.toFixed(3)}`;
  const caption = document.createElement("figcaption");
  caption.textContent = `${name} · ${score.toFixed(3)}`;
  box.append(img, caption);
  return box;
}

// Start a page: wire its controls, then load what it shows (an error says the server is unreachable).
async function startPage(wire, load) {
  wire();
  linkPages();
  if (!token) {
    $("server").textContent = "no token";
    return showError("This page needs the address `dreamkit serve` printed, which ends in ?token=…");
  }
  try {
    await load();
  } catch (error) {
    $("server").textContent = "not connected";
    showError(error.message);
  }
}
