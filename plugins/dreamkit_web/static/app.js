// dreamkit's local page: plain JavaScript, no build step. Every effect and its form come from
// /api/effects (the same listing as `dreamkit effects --json`); the server checks everything again.
// Helpers shared with the search page (token, $, api, withToken, showError) are in common.js.
"use strict";

const state = { effects: {}, steps: [], image: null, job: null, events: null, folders: [], samples: [] };

// -- effects and their forms ---------------------------------------------------------------
async function loadEffects() {
  const listing = await api("/api/effects");
  const select = $("add-effect");
  for (const effect of listing) {
    state.effects[effect.name] = effect;
    select.add(new Option(`${effect.name} — ${effect.summary}`, effect.name));
  }
  $("server").textContent = `${listing.length} effects ready`;
  $("server").classList.add("ok");
}

function addStep(name, values = {}) {
  const effect = state.effects[name];
  if (!effect) throw new Error(`unknown effect '${name}'`);
  const defaults = Object.fromEntries(effect.params.map((p) => [p.name, p.default]));
  state.steps.push({ effect: name, values: { ...defaults, ...values } });
  renderSteps();
}

function renderSteps() {
  const list = $("steps");
  list.replaceChildren();
  state.steps.forEach((step, index) => {
    const effect = state.effects[step.effect];
    const item = document.createElement("li");
    item.className = "step";
    item.dataset.effect = step.effect;
    const head = document.createElement("div");
    head.className = "step-head";
    head.innerHTML = `<span class="step-name"></span><span class="step-tools"></span>`;
    head.querySelector(".step-name").textContent = `${index + 1}. ${step.effect}`;
    const tools = head.querySelector(".step-tools");
    for (const [label, title, action] of [["↑", "move up", -1], ["↓", "move down", 1], ["✕", "remove", 0]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "icon";
      button.textContent = label;
      button.title = title;
      button.setAttribute("aria-label", `${title} ${step.effect}`);
      button.addEventListener("click", () => moveStep(index, action));
      tools.append(button);
    }
    item.append(head);
    const summary = document.createElement("p");
    summary.className = "summary";
    summary.textContent = effect.summary;
    item.append(summary);
    const error = state.stepError && state.stepError.step === index ? state.stepError : null;
    if (error) {
      item.classList.add("has-error");
      const note = document.createElement("p");
      note.className = "step-error";
      note.setAttribute("role", "alert");
      note.textContent = error.message;
      item.append(note);
    }
    if (Object.keys(effect.presets || {}).length) item.append(presetField(step, effect));
    // The parameters most people use stay in view; the ones the effect declares advanced fold away.
    // A value per item of an image list (a style's blend weight) is shown beside that item's thumbnail.
    const shown = effect.params.filter((p) => !itemValuesOf(effect, p));
    const basic = shown.filter((p) => !p.advanced);
    const advanced = shown.filter((p) => p.advanced);
    const form = document.createElement("div");
    form.className = "params";
    for (const param of basic) form.append(paramField(step, param));
    item.append(form);
    if (advanced.length) {
      const details = document.createElement("details");
      details.className = "advanced";
      details.open = step.open === true;
      details.addEventListener("toggle", () => { step.open = details.open; });
      const summaryLine = document.createElement("summary");
      summaryLine.textContent = `${advanced.length} advanced`;
      const more = document.createElement("div");
      more.className = "params";
      for (const param of advanced) more.append(paramField(step, param));
      details.append(summaryLine, more);
      item.append(details);
    }
    list.append(item);
  });
  saveState();
  if (!state.steps.length) {
    const empty = document.createElement("li");
    empty.className = "steps-empty";
    empty.textContent = "No steps yet: add an effect below.";
    list.append(empty);
  }
}

// The effect's presets (declared by its plugin): choosing one sets its values on the step.
function presetField(step, effect) {
  const label = document.createElement("label");
  label.className = "preset";
  label.append("Preset ");
  const select = document.createElement("select");
  select.name = "preset";
  select.add(new Option("(choose)", ""));
  for (const name of Object.keys(effect.presets)) select.add(new Option(name, name));
  select.value = step.preset || "";
  select.addEventListener("change", () => {
    if (!select.value) return;
    step.preset = select.value;
    Object.assign(step.values, effect.presets[select.value]);
    renderSteps();
  });
  label.append(select);
  return label;
}

function moveStep(index, action) {
  if (action === 0) state.steps.splice(index, 1);
  else {
    const target = index + action;
    if (target < 0 || target >= state.steps.length) return;
    [state.steps[index], state.steps[target]] = [state.steps[target], state.steps[index]];
  }
  renderSteps();
}

let uploadCounter = 0;

// A folder parameter (an index): one of the folders the server shares, by name (folder:NAME).
function folderField(step, param, label) {
  if (!state.folders.length) {
    const note = document.createElement("span");
    note.className = "param-help";
    note.textContent = "this server shares no folders (dreamkit serve --folder NAME=PATH)";
    label.append(note);
    return label;
  }
  const select = document.createElement("select");
  if (param.optional) select.add(new Option("(none)", ""));
  for (const folder of state.folders) select.add(new Option(folder.name, `folder:${folder.name}`));
  const current = step.values[param.name];
  select.value = typeof current === "string" && current.startsWith("folder:") ? current : select.options[0].value;
  step.values[param.name] = select.value || null;
  select.addEventListener("change", () => { step.values[param.name] = select.value || null; });
  label.append(select);
  return withHelp(label, param);
}

// A file parameter: the page uploads the chosen files with the job (the server never opens a
// path it is sent); the parameter's value names them as upload:KEY. An image parameter also offers
// the server's samples (sample:NAME), a "file" parameter the models in its models folder (model:NAME).
// Files come by picker or by drop; the chosen ones show as
// thumbnails. Words ("content", "noise", "default") can still be chosen.
function fileField(step, param, label) {
  if (param.resource === "folder") return folderField(step, param, label);
  const many = param.type.startsWith("list[");
  const picker = document.createElement("input");
  picker.type = "file";
  picker.name = param.name;
  picker.multiple = many;
  if (param.resource === "image") picker.accept = "image/*";
  const thumbs = document.createElement("span");
  thumbs.className = "thumbs";
  const choose = (values) => {
    step.values[param.name] = many ? values : (values[0] ?? param.default);
    for (const other of perItemParams(step, param)) step.values[other.name] = null;  // new items: default values
    renderThumbs(step, param, thumbs);
    saveState();
  };
  const takeFiles = (files) => {
    step.files = step.files || {};
    for (const key of Object.keys(step.files)) if (key.startsWith(`${param.name}:`)) delete step.files[key];
    choose([...files].map((file) => {
      const key = `${param.name}:${++uploadCounter}`;
      step.files[key] = file;
      return `upload:${key}`;
    }));
  };
  picker.addEventListener("change", () => takeFiles(picker.files));
  label.addEventListener("dragover", (e) => { e.preventDefault(); label.classList.add("over"); });
  label.addEventListener("dragleave", () => label.classList.remove("over"));
  label.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();  // not the pipeline card's recipe drop
    label.classList.remove("over");
    if (e.dataTransfer.files.length) takeFiles(many ? e.dataTransfer.files : [e.dataTransfer.files[0]]);
  });
  label.append(picker);
  const choices = [...(param.words || [])];
  if (param.resource === "image") choices.push(...state.samples.map((name) => `sample:${name}`));
  if (param.resource === "file") choices.push(...(state.models || []).map((model) => `model:${model.name}`));
  if (choices.length) {
    const select = document.createElement("select");
    select.name = `${param.name}-choice`;
    const kind = param.resource === "image" ? "a sample" : "a model";
    select.setAttribute("aria-label", `${param.name}: ${kind} or a word`);
    select.add(new Option(param.words?.length ? `(a word or ${kind})` : `(or ${kind})`, ""));
    for (const choice of choices) select.add(new Option(choice.replace(/^(sample|model):/, "$1: "), choice));
    const current = step.values[param.name];
    const single = Array.isArray(current) ? (current.length === 1 ? current[0] : "") : current;
    select.value = choices.includes(single) ? single : "";
    select.addEventListener("change", () => {
      if (!select.value) return;
      picker.value = "";
      choose([select.value]);
    });
    label.append(select);
  }
  label.append(thumbs);
  renderThumbs(step, param, thumbs);
  return withHelp(label, param);
}

// Small pictures of what an image parameter names now: the user's files (read in the browser,
// never sent before Run) and samples (from the server, by name).
function renderThumbs(step, param, box) {
  box.replaceChildren();
  const current = step.values[param.name];
  const values = Array.isArray(current) ? current : current ? [current] : [];
  if (param.resource !== "image") return renderFileNames(step, values, box);
  for (const [position, value] of values.entries()) {
    let url = null;
    if (value.startsWith("upload:") && step.files?.[value.slice(7)]) {
      step.thumbs = step.thumbs || {};
      url = step.thumbs[value] = step.thumbs[value] || URL.createObjectURL(step.files[value.slice(7)]);
    } else if (value.startsWith("sample:")) url = withToken(`/api/samples/${encodeURIComponent(value.slice(7))}`);
    if (!url) continue;
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = url;
    img.alt = value.startsWith("upload:") ? step.files[value.slice(7)].name : value.slice(7);
    img.title = img.alt;
    const item = document.createElement("span");
    item.className = "thumb-item";
    item.append(img);
    for (const other of perItemParams(step, param)) item.append(itemValueField(step, other, position, values.length, img.alt));
    box.append(item);
  }
}

// The names of the user's files chosen for a parameter that is not a picture (a trained model).
// The pipeline card is redrawn after every run, and a new file picker shows "no file chosen":
// without the name the page would not show what the step will use.
function renderFileNames(step, values, box) {
  for (const value of values) {
    const file = typeof value === "string" && value.startsWith("upload:") ? step.files?.[value.slice(7)] : null;
    if (!file) continue;
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = name.title = file.name;
    box.append(name);
  }
}

// The parameter `param` of `effect` gives one value per item of an image list shown as thumbnails.
function itemValuesOf(effect, param) {
  const target = param.per_item_of && effect.params.find((p) => p.name === param.per_item_of);
  return Boolean(target && target.resource === "image");
}

function perItemParams(step, param) {
  const effect = state.effects[step.effect];
  return effect.params.filter((p) => p.per_item_of === param.name && itemValuesOf(effect, p));
}

// One item's value (a blend weight) beside its thumbnail; the list is filled with the default of
// 1 for the items not set, and sent only once one is changed.
function itemValueField(step, param, position, count, itemName) {
  const input = document.createElement("input");
  input.type = "number";
  input.className = "item-value";
  input.name = `${param.name}-${position}`;
  input.step = "any";
  if (param.min !== null) input.min = param.min;
  input.title = `${param.name} of ${itemName}: ${param.help}`;
  input.setAttribute("aria-label", `${param.name} of ${itemName}`);
  const current = step.values[param.name];
  input.value = Array.isArray(current) && current.length === count ? current[position] : 1;
  input.addEventListener("change", () => {
    const values = Array.isArray(step.values[param.name]) && step.values[param.name].length === count
      ? [...step.values[param.name]] : Array(count).fill(1);
    values[position] = input.value === "" ? 1 : Number(input.value);
    step.values[param.name] = values;
    saveState();
  });
  return input;
}

function withHelp(label, param) {
  const help = document.createElement("span");
  help.className = "param-help";
  help.textContent = param.help || param.allowed;
  label.append(help);
  return label;
}

function paramField(step, param) {
  const label = document.createElement("label");
  label.className = "param";
  const error = state.stepError;
  if (error && error.param === param.name && state.steps[error.step] === step) label.classList.add("invalid");
  label.title = `${param.help}${param.help ? "\n" : ""}allowed: ${param.allowed}`;
  const name = document.createElement("span");
  name.className = "param-name";
  name.textContent = param.name;
  label.append(name);
  if (param.resource) return fileField(step, param, label);
  const value = step.values[param.name];
  let input;
  if (param.choices) {
    input = document.createElement("select");
    if (param.optional) input.add(new Option("(none)", ""));
    for (const choice of param.choices) input.add(new Option(String(choice), String(choice)));
    input.value = value === null ? "" : String(value);
  } else if (param.type === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(value);
  } else {
    input = document.createElement("input");
    const numeric = param.type === "int" || param.type === "float";
    input.type = numeric ? "number" : "text";
    if (numeric) {
      input.step = param.type === "int" ? "1" : "any";
      if (param.min !== null) input.min = param.min;
      if (param.max !== null) input.max = param.max;
    }
    input.value = value === null || value === undefined ? "" : Array.isArray(value) ? value.join(", ") : String(value);
    input.placeholder = param.optional ? "none" : param.allowed;
  }
  input.name = param.name;
  input.addEventListener("change", () => { step.values[param.name] = readValue(param, input); saveState(); });
  const slider = sliderFor(param, input);
  if (slider) label.append(slider);
  label.append(input);
  return withHelp(label, param);
}

// A number with a small closed range gets a slider beside its box; both stay in step.
function sliderFor(param, box) {
  const low = param.min ?? param.gt;
  const numeric = param.type === "int" || param.type === "float";
  if (!numeric || param.optional || low === null || param.max === null) return null;
  if (param.type === "int" && param.max - low > 100) return null;  // steps 1..10000: a box is better
  const slider = document.createElement("input");
  slider.type = "range";
  slider.name = `${param.name}-slider`;
  slider.setAttribute("aria-label", `${param.name} slider`);
  const step = param.type === "int" ? 1 : (param.max - low) / 200;
  slider.min = param.min ?? low + step;  // gt: the bound itself is not allowed
  slider.max = param.max;
  slider.step = String(step);
  slider.value = box.value;
  slider.addEventListener("input", () => {
    box.value = slider.value;
    box.dispatchEvent(new Event("change"));
  });
  box.addEventListener("change", () => { slider.value = box.value; });
  return slider;
}

function readValue(param, input) {
  if (param.type === "bool") return input.checked;
  const text = input.value.trim();
  if (text === "" && param.optional) return null;
  const scalar = (kind, raw) => (kind === "int" || kind === "float") && raw !== "" && !isNaN(Number(raw)) ? Number(raw) : raw;
  if (param.type.startsWith("list[")) {
    const kind = param.type.slice(5, -1);
    return text === "" ? [] : text.replace(/^\[|\]$/g, "").split(",").map((s) => scalar(kind, s.trim()));
  }
  return scalar(param.type, text);
}

function pipelineConfig() {
  return { steps: state.steps.map((s) => ({ effect: s.effect, params: Object.fromEntries(
    Object.entries(s.values).filter(([, v]) => v !== null && v !== undefined)) })) };
}

// -- the image ------------------------------------------------------------------------------
async function loadSamples() {
  state.samples = await sampleButtons($("samples"), setImage);
}

function setImage(image) {
  state.image = image;
  state.detections = [];
  $("boxes").replaceChildren();
  saveState();
  $("before").src = image.url;
  $("after").removeAttribute("src");
  $("viewer").classList.remove("empty", "compare");
  $("slider").hidden = true;
  document.querySelectorAll(".tag").forEach((t) => { t.hidden = true; });
  $("dropzone-text").textContent = image.name;
  document.querySelectorAll(".sample").forEach((b) => b.classList.toggle("chosen", b.title === image.sample));
}

function pickFile(file) {
  if (!file) return;
  setImage({ file, url: URL.createObjectURL(file), name: file.name });
}

// -- running --------------------------------------------------------------------------------
async function run() {
  showError("");
  state.stepError = null;
  state.detections = [];
  $("boxes").replaceChildren();
  $("boxes-toggle").hidden = true;
  renderSteps();
  if (!state.image || state.image.kept) return showError("Pick an image first: drop one, choose a file, or try a sample.");
  if (!state.steps.length) return showError("Add at least one effect step.");
  const form = new FormData();
  form.append("pipeline", JSON.stringify(pipelineConfig()));
  form.append("seed", $("seed").value || "0");
  if (state.image.file) form.append("image", state.image.file, state.image.name);
  else form.append("sample", state.image.sample);
  for (const step of state.steps) {
    for (const [key, file] of Object.entries(step.files || {})) form.append(`file:${key}`, file, file.name);
  }
  let submitted;
  try {
    submitted = await api("/api/jobs", { method: "POST", body: form });
  } catch (error) {
    return showStepError(error.message);
  }
  state.job = submitted.job;
  $("run").disabled = true;
  $("cancel").hidden = false;
  $("result-card").hidden = true;
  $("progress-card").hidden = false;
  renderProgress();
  follow(submitted.job);
  // The work shows in the viewer: bring it into view (on a phone it is far above the Run bar).
  if (!elementInView($("viewer"))) $("viewer").closest(".card").scrollIntoView({ block: "start" });
}

function elementInView(element) {
  const box = element.getBoundingClientRect();
  return box.top >= 0 && box.bottom <= innerHeight;
}

function renderProgress() {
  const list = $("progress");
  list.replaceChildren();
  state.steps.forEach((step, index) => {
    const item = document.createElement("li");
    item.className = "progress-step waiting";
    item.dataset.step = index;
    item.innerHTML = `<span class="label"></span><span class="bar"><span class="fill"></span></span><span class="detail">waiting</span>`;
    item.querySelector(".label").textContent = `${index + 1}. ${step.effect}`;
    list.append(item);
  });
}

function stepItem(index) { return document.querySelector(`.progress-step[data-step="${index}"]`); }

function follow(jobId) {
  if (state.events) state.events.close();
  const source = new EventSource(withToken(`/api/jobs/${jobId}/events`));
  state.events = source;
  let current = -1;
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "queued") $("queue").textContent = event.position ? `queue position ${event.position}` : "";
    if (event.type === "started") $("queue").textContent = `running on ${event.device}`;
    if (event.type === "step") {
      for (let i = 0; i < event.step; i++) finishStep(i);
      current = event.step;
      const item = stepItem(current);
      if (item) { item.className = "progress-step running"; item.querySelector(".detail").textContent = "running"; }
    }
    if (event.type === "progress" && current >= 0) {
      const item = stepItem(current);
      if (item) {
        item.querySelector(".fill").style.width = `${(100 * event.done) / Math.max(1, event.total)}%`;
        item.querySelector(".detail").textContent = `${event.desc} ${event.done}/${event.total}`;
      }
    }
    if (event.type === "preview") showPreview(jobId, event);
    if (["done", "failed", "cancelled"].includes(event.type)) {
      source.close();
      $("run").disabled = false;
      $("cancel").hidden = true;
      if (event.type === "done") {
        state.steps.forEach((_, i) => finishStep(i));
        $("queue").textContent = "done";
        showResult(jobId, event.result);
        if (event.result.history) loadHistory().catch((error) => showError(error.message));
      } else {
        $("queue").textContent = event.type;
        // Nothing of an earlier run stays as "after": this run has no result.
        $("after").removeAttribute("src");
        $("viewer").classList.remove("compare");
        $("slider").hidden = true;
        document.querySelectorAll(".tag").forEach((t) => { t.hidden = true; });
        const item = current >= 0 ? stepItem(current) : null;
        if (item) { item.className = `progress-step ${event.type}`; item.querySelector(".detail").textContent = event.type; }
        if (event.type === "failed") showStepError(event.error, current >= 0 ? current : null);
      }
    }
  };
}

// An error beside the step (and the parameter) it names: "effect 'style': parameter 'iterations' ...".
function showStepError(message, index = null) {
  showError(message);
  const effect = /effect '([^']+)'/.exec(message)?.[1];
  const step = index ?? state.steps.findIndex((s) => s.effect === effect);
  if (step === null || step < 0) return;
  state.stepError = { step, message, param: /parameter '([^']+)'/.exec(message)?.[1] || null };
  renderSteps();
}

function finishStep(index) {
  const item = stepItem(index);
  if (!item) return;
  item.className = "progress-step done";
  item.querySelector(".fill").style.width = "100%";
  item.querySelector(".detail").textContent = "done";
}

// The work so far, as the effect offers it (small, about once a second), in the "after" pane.
function showPreview(jobId, event) {
  $("after").src = withToken(`/api/jobs/${jobId}/previews/${event.preview}`);
  $("viewer").classList.add("compare");
  $("slider").hidden = false;
  document.querySelectorAll(".tag").forEach((t) => { t.hidden = false; });
  document.querySelector(".tag-after").textContent = `preview: ${event.desc}`;
  setSlider($("slider").value);
}

function showResult(jobId, result) {
  document.querySelector(".tag-after").textContent = "after";
  const file = (name) => withToken(`/api/jobs/${jobId}/files/${encodeURIComponent(name)}`);
  $("after").src = file(result.animation || result.files[0]);
  $("viewer").classList.add("compare");
  $("slider").hidden = false;
  document.querySelectorAll(".tag").forEach((t) => { t.hidden = false; });
  setSlider($("slider").value);
  $("download").href = file(result.download) + "&download=true";
  $("download").textContent = result.animation ? "Download animation" : "Download PNG";
  $("download").setAttribute("download", result.download);
  $("command").textContent = result.command;
  renderRecords(result.results, jobId);
  state.detections = result.results.filter((r) => r.detections && r.width);
  $("boxes-toggle").hidden = !state.detections.some((r) => r.detections.length);
  $("after").addEventListener("load", drawBoxes, { once: true });
  $("result-card").hidden = false;
}

function renderRecords(records, jobId) {
  const box = $("records");
  box.replaceChildren();
  records.forEach((record, recordIndex) => {
    if (record.neighbours) return box.append(neighbourRow(record, recordIndex, jobId));
    const row = document.createElement("div");
    row.className = "record";
    const title = document.createElement("strong");
    title.textContent = record.effect + (record.frame ? ` (frame ${record.frame + 1})` : "");
    row.append(title);
    const items = record.predictions || record.detections || record.neighbours || [];
    for (const item of items.slice(0, 8)) {
      const chip = document.createElement("span");
      chip.className = "chip";
      const score = item.probability ?? item.score;
      const name = item.label ?? (item.path ? item.path.split("/").pop() : "");
      chip.textContent = `${name}${score !== undefined ? ` ${(score * 100).toFixed(score < 0.095 ? 1 : 0)}%` : ""}`;
      if (item.box) chip.title = `box ${item.box.map((v) => Math.round(v)).join(", ")}`;
      row.append(chip);
    }
    box.append(row);
  });
  box.hidden = !records.length;
}

// A retrieve step's neighbours as pictures, best first, each with its name and similarity.
function neighbourRow(record, recordIndex, jobId) {
  const row = document.createElement("div");
  row.className = "record neighbours";
  const title = document.createElement("strong");
  title.textContent = `${record.effect}: nearest by ${record.by}` + (record.frame ? ` (frame ${record.frame + 1})` : "");
  const strip = document.createElement("div");
  strip.className = "neighbour-strip";
  record.neighbours.forEach((hit, number) => {
    const src = withToken(`/api/jobs/${jobId}/neighbours/${recordIndex}/${number}`);
    strip.append(scoredPicture(src, hit.path.split("/").pop(), hit.score, "neighbour"));
  });
  row.append(title, strip);
  return row;
}

// Detections drawn over the result (a toggle), placed where the image is shown: the picture is
// letterboxed in the viewer (object-fit: contain), and each record says the size its boxes are in.
function drawBoxes() {
  const overlay = $("boxes");
  overlay.replaceChildren();
  const img = $("after");
  if (!$("show-boxes").checked || !img.naturalWidth || !state.detections?.length) return;
  const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
  const left = img.offsetLeft + (img.clientWidth - img.naturalWidth * scale) / 2;
  const top = img.offsetTop + (img.clientHeight - img.naturalHeight * scale) / 2;
  for (const record of state.detections) {
    const factor = scale * (img.naturalWidth / record.width);  // a later step may have resized the image
    for (const found of record.detections) {
      const [x0, y0, x1, y1] = found.box;
      const box = document.createElement("div");
      box.className = "box";
      box.style.left = `${left + x0 * factor}px`;
      box.style.top = `${top + y0 * factor}px`;
      box.style.width = `${(x1 - x0) * factor}px`;
      box.style.height = `${(y1 - y0) * factor}px`;
      const label = document.createElement("span");
      label.textContent = `${found.label} ${Math.round(found.score * 100)}%`;
      box.append(label);
      overlay.append(box);
    }
  }
}

function setSlider(value) {
  $("after-clip").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("viewer").style.setProperty("--split", `${value}%`);
}

// -- restoring a pipeline -------------------------------------------------------------------
async function restore(file) {
  const form = new FormData();
  form.append("recipe", file, file.name);
  try {
    const restored = await api("/api/recipe", { method: "POST", body: form });
    state.steps = [];
    for (const step of restored.pipeline.steps) addStep(step.effect, step.params || {});
    $("seed").value = restored.seed || 0;
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

// -- history: finished runs the server keeps (dreamkit serve --gallery) ------------------------
async function loadHistory() {
  const entries = await api("/api/history");
  const list = $("history");
  list.replaceChildren();
  for (const entry of entries) {
    const item = document.createElement("li");
    item.className = "history-item";
    item.dataset.entry = entry.id;
    const thumb = document.createElement("img");
    thumb.src = withToken(`/api/history/${entry.id}/thumb.png`);
    thumb.alt = `result of ${entry.source}`;
    const text = document.createElement("div");
    const what = document.createElement("div");
    what.textContent = `${entry.source} — ${entry.pipeline.steps.map((s) => s.effect).join(" → ")}`;
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = new Date(entry.time * 1000).toLocaleString();
    text.append(what, when);
    const tools = document.createElement("div");
    tools.className = "tools";
    for (const [label, action] of [["Open", () => openEntry(entry)], ["Delete", () => deleteEntry(entry)]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.textContent = label;
      button.setAttribute("aria-label", `${label.toLowerCase()} ${entry.source} ${entry.id}`);
      button.addEventListener("click", action);
      tools.append(button);
    }
    item.append(thumb, text, tools);
    list.append(item);
  }
  $("history-card").hidden = !entries.length;
}

// Reopen a kept run: its pipeline and seed in the editor, its input and result in the viewer.
function openEntry(entry) {
  state.steps = [];
  let files = 0;
  for (const step of entry.pipeline.steps) {
    addStep(step.effect, step.params || {});
    files += (step.files || []).length;
  }
  $("seed").value = entry.seed || 0;
  const file = (name) => withToken(`/api/history/${entry.id}/${name}`);
  const sample = entry.sample && document.querySelector(`.sample[title="${CSS.escape(entry.sample)}"]`);
  if (sample) sample.click();  // a sample can run again as it is
  else setImage({ url: file("input.png"), name: entry.source, sample: null, kept: true });
  $("after").src = file(entry.result);
  $("viewer").classList.add("compare");
  $("slider").hidden = false;
  document.querySelectorAll(".tag").forEach((t) => { t.hidden = false; });
  setSlider($("slider").value);
  $("command").textContent = entry.command;
  const again = [...(sample ? [] : ["its image"]), ...(files ? ["the files it used"] : [])];
  showError(again.length ? `Reopened; to run it again, pick ${again.join(" and ")} again (yours, not kept).` : "");
  saveState();
}

async function deleteEntry(entry) {
  try {
    await api(`/api/history/${entry.id}`, { method: "DELETE" });
    await loadHistory();
  } catch (error) {
    showError(error.message);
  }
}

// -- the pipeline survives a reload ------------------------------------------------------------
// The steps, their values, the seed and a chosen sample are kept in this browser's storage.
// Uploaded files cannot be kept (a browser gives pages no lasting handle on a user's file): their
// parameters go back to their defaults, and the page says so.
const STORAGE_KEY = "dreamkit.page";

function saveState() {
  if (state.restoring) return;
  const steps = state.steps.map((step) => ({ effect: step.effect, preset: step.preset,
    values: Object.fromEntries(Object.entries(step.values).filter(([, v]) => !isUpload(v))),
    uploads: Object.entries(step.values).filter(([, v]) => isUpload(v)).map(([name]) => name) }));
  const kept = { steps, seed: $("seed").value, sample: state.image?.sample || null };
  try { localStorage.setItem(STORAGE_KEY, JSON.stringify(kept)); } catch { /* storage full or off: nothing kept */ }
}

function isUpload(value) {
  return (typeof value === "string" && value.startsWith("upload:")) || (Array.isArray(value) && value.some(isUpload));
}

function restoreState() {
  let kept;
  try { kept = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null"); } catch { kept = null; }
  if (!kept) return;
  state.restoring = true;
  let dropped = 0;
  for (const step of kept.steps || []) {
    const effect = state.effects[step.effect];
    if (!effect) continue;  // a plugin no longer installed
    const known = Object.fromEntries(Object.entries(step.values || {}).filter(([name]) => effect.params.some((p) => p.name === name)));
    dropped += (step.uploads || []).length;
    addStep(step.effect, known);
    state.steps[state.steps.length - 1].preset = step.preset;
  }
  $("seed").value = kept.seed || 0;
  const sample = document.querySelector(`.sample[title="${CSS.escape(kept.sample || "")}"]`);
  if (sample) sample.click();
  state.restoring = false;
  renderSteps();
  if (dropped) showError("Restored your pipeline; pick its files again (a page cannot keep your files across a reload).");
}

// -- wiring ---------------------------------------------------------------------------------
function wire() {
  wireDropzone($("dropzone"), $("file"), pickFile);
  const card = $("pipeline-card");
  card.addEventListener("dragover", (e) => { e.preventDefault(); card.classList.add("over"); });
  card.addEventListener("dragleave", () => card.classList.remove("over"));
  card.addEventListener("drop", (e) => { e.preventDefault(); card.classList.remove("over"); if (e.dataTransfer.files[0]) restore(e.dataTransfer.files[0]); });
  $("recipe-file").addEventListener("change", (e) => e.target.files[0] && restore(e.target.files[0]));
  $("add-button").addEventListener("click", () => addStep($("add-effect").value));
  $("run").addEventListener("click", run);
  $("random-seed").addEventListener("click", () => { $("seed").value = 1 + Math.floor(Math.random() * 2147483646); saveState(); });
  $("seed").addEventListener("change", saveState);
  $("cancel").addEventListener("click", () => state.job && api(`/api/jobs/${state.job}`, { method: "DELETE" }).catch((e) => showError(e.message)));
  $("slider").addEventListener("input", (e) => setSlider(e.target.value));
  $("show-boxes").addEventListener("change", drawBoxes);
  addEventListener("resize", drawBoxes);
  $("copy").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText($("command").textContent); $("copy").textContent = "Copied"; }
    catch { const range = document.createRange(); range.selectNodeContents($("command")); getSelection().removeAllRanges(); getSelection().addRange(range); $("copy").textContent = "Selected: press Ctrl-C"; }
    setTimeout(() => { $("copy").textContent = "Copy command"; }, 2000);
  });
}

startPage(wire, async () => {
  await loadEffects();
  state.folders = await api("/api/folders");
  state.models = await api("/api/models");
  await loadSamples();
  restoreState();
  renderSteps();
  await loadHistory();
});
