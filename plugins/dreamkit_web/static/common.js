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
