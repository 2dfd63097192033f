// dreamkit's search page: pick an index the server shares, drop a query image, see the nearest
// images with their similarity; find groups of near-duplicates. A search is a job running the
// `retrieve` step on the query (the same step as on the studio page and the command line).
"use strict";

const search = { indexes: [], query: null };

async function loadIndexes() {
  search.indexes = await api("/api/indexes");
  const select = $("index");
  select.replaceChildren();
  for (const index of search.indexes) {
    select.add(new Option(`${index.name} · by ${index.by} · ${index.images} images`, index.name));
  }
  if (!search.indexes.length) {
    $("search").disabled = $("dupes").disabled = true;
    $("index-info").textContent = "This server shares no index. Make one with `dreamkit index build FOLDER -o NAME.index` "
      + "and start the server with `dreamkit serve --index NAME=PATH`.";
  }
  showIndex();
}

function chosenIndex() { return search.indexes.find((index) => index.name === $("index").value); }

function showIndex() {
  const index = chosenIndex();
  if (!index) return;
  $("index-info").textContent = `By ${index.by}: ${index.descriptor}.`;
  $("threshold").value = index.dupes_threshold ?? "";
  $("threshold").placeholder = index.dupes_threshold === null ? "give one (e.g. 0.9)" : "";
  $("groups").replaceChildren();
  $("dupes-title").textContent = "";
}

async function loadSamples() {
  for (const sample of await api("/api/samples")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.title = sample.name;
    const img = document.createElement("img");
    img.src = withToken(`/api/samples/${encodeURIComponent(sample.name)}`);
    img.alt = sample.name;
    button.append(img);
    button.addEventListener("click", () => setQuery({ sample: sample.name, url: img.src, name: sample.name }));
    $("samples").append(button);
  }
}

function setQuery(query) {
  search.query = query;
  $("dropzone-text").textContent = query.name;
  $("query-img").src = query.url;
  $("query-img").hidden = false;
  document.querySelectorAll(".sample").forEach((b) => b.classList.toggle("chosen", b.title === query.sample));
}

function pickFile(file) {
  if (file) setQuery({ file, url: URL.createObjectURL(file), name: file.name });
}

async function runSearch() {
  showError("");
  const index = chosenIndex();
  if (!index) return showError("Pick an index first.");
  if (!search.query) return showError("Pick a query image first: drop one, choose a file, or try a sample.");
  const form = new FormData();
  const params = { index: `folder:${index.name}`, k: Number($("k").value || 8) };
  form.append("pipeline", JSON.stringify({ steps: [{ effect: "retrieve", params }] }));
  if (search.query.file) form.append("image", search.query.file, search.query.name);
  else form.append("sample", search.query.sample);
  $("search").disabled = true;
  $("hits-title").textContent = "searching…";
  try {
    const { job } = await api("/api/jobs", { method: "POST", body: form });
    const finished = await finish(job);
    if (finished.status !== "done") throw new Error(finished.error || `the search was ${finished.status}`);
    showHits(job, finished.result.results[0], index);
    // On a phone the results are above the Search bar, out of view: bring them in.
    const box = $("hits-card").getBoundingClientRect();
    if (box.top < 0 || box.top > innerHeight - 80) $("hits-card").scrollIntoView({ block: "start" });
  } catch (error) {
    $("hits-title").textContent = "";
    showError(error.message);
  } finally {
    $("search").disabled = false;
  }
}

// A job's final status (searches are short: polled, no event stream needed).
async function finish(job) {
  for (;;) {
    const status = await api(`/api/jobs/${job}`);
    if (["done", "failed", "cancelled"].includes(status.status)) return status;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function showHits(job, record, index) {
  const grid = $("hits");
  grid.replaceChildren();
  $("hits-empty").hidden = true;
  $("hits-title").textContent = `${record.neighbours.length} by ${record.by} in ${index.name}`;
  record.neighbours.forEach((hit, number) => {
    const name = hit.path.split("/").pop();
    grid.append(figure(withToken(`/api/jobs/${job}/neighbours/0/${number}`), name, hit.score, "hit"));
  });
}

function figure(src, name, score, className) {
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

async function findDupes() {
  showError("");
  const index = chosenIndex();
  if (!index) return showError("Pick an index first.");
  const threshold = $("threshold").value;
  $("dupes").disabled = true;
  $("dupes-title").textContent = "looking…";
  try {
    const query = threshold === "" ? "" : `?threshold=${encodeURIComponent(threshold)}`;
    const found = await api(`/api/indexes/${encodeURIComponent(index.name)}/dupes${query}`);
    showGroups(index, found);
  } catch (error) {
    $("dupes-title").textContent = "";
    showError(error.message);
  } finally {
    $("dupes").disabled = false;
  }
}

function showGroups(index, found) {
  const list = $("groups");
  list.replaceChildren();
  $("dupes-title").textContent = `${found.groups.length} groups among ${found.images} images (similarity ≥ ${found.threshold})`;
  for (const group of found.groups) {
    const item = document.createElement("li");
    item.className = "group";
    group.forEach((hit, number) => {
      const src = withToken(`/api/indexes/${encodeURIComponent(index.name)}/images/${hit.key}`);
      const shown = figure(src, hit.name, hit.score, number ? "dupe" : "dupe original");
      shown.title = `${hit.name}: ${hit.width}×${hit.height}${number ? "" : " (likely original: largest)"}`;
      item.append(shown);
    });
    list.append(item);
  }
  if (!found.groups.length) list.append(Object.assign(document.createElement("li"), { className: "hint", textContent: "No near-duplicates at this similarity." }));
}

function wire() {
  $("file").addEventListener("change", (e) => pickFile(e.target.files[0]));
  const zone = $("dropzone");
  for (const name of ["dragenter", "dragover"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const name of ["dragleave", "drop"]) zone.addEventListener(name, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); pickFile(e.dataTransfer.files[0]); });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("index").addEventListener("change", showIndex);
  $("search").addEventListener("click", runSearch);
  $("dupes").addEventListener("click", findDupes);
}

async function start() {
  wire();
  linkPages();
  if (!token) {
    $("server").textContent = "no token";
    return showError("This page needs the address `dreamkit serve` printed, which ends in ?token=…");
  }
  try {
    await loadIndexes();
    await loadSamples();
    $("server").textContent = `${search.indexes.length} ${search.indexes.length === 1 ? "index" : "indexes"} shared`;
    $("server").classList.add("ok");
  } catch (error) {
    $("server").textContent = "not connected";
    showError(error.message);
  }
}

start();
