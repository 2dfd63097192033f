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
  $("index-info").textContent = `Describes ${index.descriptor}.`;
  $("threshold").value = index.dupes_threshold ?? "";
  $("threshold").placeholder = index.dupes_threshold === null ? "give one (e.g. 0.9)" : "";
  $("groups").replaceChildren();
  $("dupes-title").textContent = "";
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
    grid.append(scoredPicture(withToken(`/api/jobs/${job}/neighbours/0/${number}`), name, hit.score, "hit"));
  });
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
  const groups = `${found.groups.length} group${found.groups.length === 1 ? "" : "s"}`;
  $("dupes-title").textContent = `${groups} among ${found.images} images (similarity ≥ ${found.threshold})`;
  for (const group of found.groups) {
    const item = document.createElement("li");
    item.className = "group";
    group.forEach((hit, number) => {
      const src = withToken(`/api/indexes/${encodeURIComponent(index.name)}/images/${hit.key}`);
      const shown = scoredPicture(src, hit.name, hit.score, number ? "dupe" : "dupe original");
      shown.title = `${hit.name}: ${hit.width}×${hit.height}${number ? "" : " (likely original: largest)"}`;
      item.append(shown);
    });
    list.append(item);
  }
  if (!found.groups.length) list.append(Object.assign(document.createElement("li"), { className: "hint", textContent: "No near-duplicates at this similarity." }));
}

function wire() {
  wireDropzone($("dropzone"), $("file"), pickFile);
  $("index").addEventListener("change", showIndex);
  $("search").addEventListener("click", runSearch);
  $("dupes").addEventListener("click", findDupes);
}

startPage(wire, async () => {
  await loadIndexes();
  await sampleButtons($("samples"), setQuery);
  $("server").textContent = `${search.indexes.length} ${search.indexes.length === 1 ? "index" : "indexes"} shared`;
  $("server").classList.add("ok");
});
