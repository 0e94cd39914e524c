// The DFI page: invert → latent → edit / interpolate / outpaint, and jobs (metrics or latents). Plain DOM.
import { ApiError, api, apiKey, setApiKey } from "./api.js";
import { npyFloat32 } from "./npy.js";

const $ = (id) => document.getElementById(id);
const png = (b64) => `data:image/png;base64,${b64}`;
const EDIT_DEBOUNCE_MS = 100;
const POLL_MS = 500;
const FINISHED = new Set(["complete", "failed", "aborted"]);

const state = {
  models: [],
  model: null, // GET /models entry of the selected bundle
  samples: {}, // data set → [{file, label, index}] (static/samples/index.json)
  input: null, // base64 of the image being inverted
  inputB: null, // base64 of the interpolation's second image
  latents: { dfi: null, dfi_opt: null },
  missing: { dfi: "", dfi_opt: "" }, // why a latent is absent (shown instead of it)
  generation: 0, // bumped per inversion: late answers for an older input are dropped
  editSeq: 0,
  editTimer: null,
  job: null,
  pollTimer: null,
};

// ---- errors: every one is shown where it happened; a later success there clears it ----

function showError(element, error) {
  element.textContent = error && error.message ? error.message : String(error);
  element.hidden = false;
}

function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

window.addEventListener("unhandledrejection", (event) => showError($("global-error"), event.reason));
window.addEventListener("error", (event) => showError($("global-error"), event.error || event.message));

// ---- helpers ----

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read the file: ${reader.error}`));
    reader.readAsDataURL(blob);
  });
}

async function loadSample(file) {
  const path = `/static/samples/${file}`;
  const response = await fetch(path);
  if (!response.ok) throw new Error(`GET ${path} → ${response.status}`);
  return readAsDataUrl(await response.blob());
}

function base64Of(dataUrl) {
  return dataUrl.slice(dataUrl.indexOf(",") + 1);
}

function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function image(b64, alt, className = "px small") {
  return Object.assign(document.createElement("img"), { src: png(b64), alt, className });
}

function figure(img, caption) {
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

// ---- bundles ----

async function loadModels() {
  const errorBox = $("global-error");
  try {
    state.models = await api("GET", "/models");
    clearError(errorBox);
  } catch (error) {
    showError(errorBox, error);
    if (error.status === 401 || error.status === 403) $("access").open = true; // the key field
    return;
  }
  let preferred = null;
  try {
    const response = await fetch("/readyz");
    const ready = await response.json();
    preferred = ready.default_model;
    if (response.status !== 200) showError(errorBox, new Error(`service not ready: ${JSON.stringify(ready)}`));
  } catch (error) {
    showError(errorBox, new Error(`GET /readyz: ${error.message}`));
  }
  const select = $("model");
  const label = (m) => (m.name === m.dataset ? m.name : `${m.name} (${m.dataset})`);
  select.replaceChildren(...state.models.map((m) => new Option(label(m), m.name)));
  if (!state.models.length) {
    showError(errorBox, new Error("the service has no bundles loaded"));
    return;
  }
  select.value = state.models.some((m) => m.name === preferred) ? preferred : state.models[0].name;
  await selectModel(select.value);
}

async function selectModel(name) {
  state.model = state.models.find((m) => m.name === name);
  const m = state.model;
  const { width, height, channels } = m.image;
  $("model-info").textContent =
    `${m.dataset} · ${width}×${height}×${channels} · latent ${m.latent.size} · ${m.directions.length} directions` +
    ` · refinement ${m.refinement ? "available" : "unavailable (no torch in the API)"}`;
  const root = document.documentElement.style;
  root.setProperty("--img", `${width * Math.max(1, Math.round(176 / width))}px`);
  root.setProperty("--thumb", `${width * Math.max(1, Math.round(64 / width))}px`);
  renderSamples();
  renderJobMetrics();
  state.latents = { dfi: null, dfi_opt: null };
  showLatent();
  try {
    const detail = await api("GET", `/models/${encodeURIComponent(name)}`);
    state.outpaint = detail.manifest.graphs.outpaint || null; // patch box and latent sizes of the SCGAN graph
    clearError($("edit-error"));
    renderSliders(detail.directions);
  } catch (error) {
    renderSliders([]);
    showError($("edit-error"), error);
  }
  if (state.input) invert();
  if (state.input && state.inputB) interpolate();
}

function renderSamples() {
  const list = state.samples[state.model.dataset] || [];
  for (const [boxId, onPick] of [
    ["samples", (url) => setInput(url)],
    ["samples-b", (url) => setInputB(url)],
  ]) {
    const box = $(boxId);
    box.replaceChildren();
    if (!list.length) {
      box.textContent = `no test images shipped for ${state.model.dataset}`;
      continue;
    }
    for (const sample of list) {
      const button = Object.assign(document.createElement("button"), {
        type: "button",
        className: "sample",
        title: `${sample.label} (test image #${sample.index})`,
      });
      button.dataset.file = sample.file;
      button.append(Object.assign(document.createElement("img"), { src: `/static/samples/${sample.file}`, alt: "" }));
      button.addEventListener("click", async () => {
        try {
          onPick(await loadSample(sample.file));
        } catch (error) {
          showError($("global-error"), error);
        }
      });
      box.append(button);
    }
  }
}

// ---- inversion ----

function setInput(dataUrl) {
  state.input = base64Of(dataUrl);
  $("input-img").src = dataUrl;
  for (const id of ["interpolate", "outpaint"]) $(id).disabled = false;
  invert();
  if (state.inputB) interpolate();
}

async function invert() {
  const generation = ++state.generation;
  const steps = Number($("refine-steps").value) || 0;
  state.latents = { dfi: null, dfi_opt: null };
  const optOff = "refinement is off (0 steps)";
  state.missing = { dfi: "waiting for DFI…", dfi_opt: steps > 0 ? "waiting for DFI^opt…" : optOff };
  showLatent();
  for (const id of ["recon-dfi", "recon-opt"]) $(id).removeAttribute("src");
  for (const id of ["dfi-time", "opt-time"]) $(id).textContent = "…";
  for (const id of ["dfi-error", "opt-error"]) clearError($(id));
  $("opt-steps").textContent = steps > 0 ? `(${steps} steps)` : "";
  const run = async (method, refineSteps, imgId, timeId, errorId) => {
    try {
      const body = { model: state.model.name, images: [state.input], refine_steps: refineSteps };
      const answer = await api("POST", "/invert", body);
      if (generation !== state.generation) return;
      const result = answer.results[0];
      $(imgId).src = png(result.reconstruction_png);
      $(timeId).textContent = `${answer.timings.total_ms.toFixed(0)} ms`;
      state.latents[method] = result.latent;
      if ($("latent-source").value === method) {
        showLatent();
        scheduleEdit(0);
      }
    } catch (error) {
      if (generation === state.generation) {
        $(timeId).textContent = "";
        state.missing[method] = "no latent: the request failed (error above)";
        showLatent();
      }
      showError($(errorId), error);
    }
  };
  const jobs = [run("dfi", 0, "recon-dfi", "dfi-time", "dfi-error")];
  if (steps > 0) jobs.push(run("dfi_opt", steps, "recon-opt", "opt-time", "opt-error"));
  else $("opt-time").textContent = "off (0 steps)";
  await Promise.all(jobs);
}

function currentLatent() {
  return state.latents[$("latent-source").value];
}

function showLatent() {
  const z = currentLatent();
  $("latent").value = z ? JSON.stringify(z) : "";
  for (const id of ["copy-latent", "download-json", "download-npy"]) $(id).disabled = !z;
  const norm = z ? Math.hypot(...z) : 0;
  $("latent-info").textContent = z
    ? `${z.length} values · ‖z‖ = ${norm.toFixed(2)}`
    : state.input
      ? state.missing[$("latent-source").value]
      : "";
}

function latentFileName(ext) {
  return `${state.model.name}-${$("latent-source").value}-latent.${ext}`;
}

async function copyLatent() {
  const box = $("latent");
  try {
    await navigator.clipboard.writeText(box.value);
    $("latent-info").textContent = "copied to the clipboard";
  } catch (error) {
    box.select();
    showError($("global-error"), new Error(`copy failed (${error.message}); the text is selected: press Ctrl+C`));
  }
}

// ---- editing ----

function renderSliders(directions) {
  const box = $("sliders");
  box.replaceChildren();
  if (!directions.length) {
    box.textContent = "this bundle has no named directions";
    return;
  }
  const groups = new Map(); // method → its directions (a bundle may ship eq. 9, PCA, SeFa, SVM directions, ...)
  for (const direction of directions) {
    if (!groups.has(direction.method)) groups.set(direction.method, []);
    groups.get(direction.method).push(direction);
  }
  for (const [method, members] of groups) {
    const group = document.createElement("fieldset");
    group.append(Object.assign(document.createElement("legend"), { textContent: method, title: method }));
    for (const direction of members) group.append(slider(direction));
    box.append(group);
  }
}

function slider(direction) {
  const row = Object.assign(document.createElement("div"), { className: "slider", title: direction.description });
  const id = `dir-${direction.name}`;
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: direction.name });
  const input = Object.assign(document.createElement("input"), { type: "range", id, min: -3, max: 3, step: 0.1 });
  input.value = 0;
  input.dataset.direction = direction.name;
  const output = Object.assign(document.createElement("output"), { htmlFor: id, value: "0.0" });
  input.addEventListener("input", () => {
    output.value = Number(input.value).toFixed(1);
    scheduleEdit(EDIT_DEBOUNCE_MS);
  });
  row.append(label, input, output);
  return row;
}

function strengths() {
  return [...document.querySelectorAll("#sliders input[type=range]")].map((input) => ({
    name: input.dataset.direction,
    strength: Number(input.value),
  }));
}

function scheduleEdit(delay) {
  clearTimeout(state.editTimer);
  state.editTimer = setTimeout(runEdit, delay);
}

async function runEdit() {
  const z = currentLatent();
  const directions = strengths();
  if (!z || !directions.length) return;
  const seq = ++state.editSeq;
  try {
    const answer = await api("POST", "/edit", { model: state.model.name, latents: [z], directions });
    if (seq !== state.editSeq) return; // a newer slider position is on its way
    const edited = $("edited-img");
    edited.src = png(answer.results[0].image_png);
    const moved = directions.filter((d) => d.strength !== 0);
    $("edited-caption").textContent = moved.length
      ? moved.map((d) => `${d.strength > 0 ? "+" : ""}${d.strength.toFixed(1)} ${d.name}`).join(", ")
      : "no direction applied";
    clearError($("edit-error"));
  } catch (error) {
    showError($("edit-error"), error);
  }
}

function resetSliders() {
  for (const input of document.querySelectorAll("#sliders input[type=range]")) {
    input.value = 0;
    input.nextElementSibling.value = "0.0";
  }
  scheduleEdit(0);
}

// ---- interpolation and outpainting ----

function setInputB(dataUrl) {
  state.inputB = base64Of(dataUrl);
  $("input-b").src = dataUrl;
  if (state.input) interpolate();
}

async function interpolate() {
  const errorBox = $("interp-error");
  if (!state.input || !state.inputB) {
    showError(errorBox, new Error("pick the input (Invert, above) and a second image first"));
    return;
  }
  const steps = Number($("interp-steps").value);
  try {
    const body = { model: state.model.name, images: [state.input, state.inputB], interpolate_steps: steps };
    const answer = await api("POST", "/edit", body);
    const n = answer.results.length;
    const frames = answer.results.map((r, i) => {
      const t = n > 1 ? i / (n - 1) : 0;
      return figure(image(r.image_png, `t = ${t.toFixed(2)}`), `t = ${t.toFixed(2)}`);
    });
    $("strip").replaceChildren(...frames);
    clearError(errorBox);
  } catch (error) {
    showError(errorBox, error);
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the input image could not be drawn"));
    img.src = src;
  });
}

// The centre patch the SCGAN expects: the input fitted to the model's size (centre square, as the service's
// preprocessing does), then the manifest's patch box cut out. Also draws the patch inside an empty frame.
async function patchOf(input, box, width, height) {
  const img = await loadImage(`data:image/png;base64,${input}`);
  const side = Math.min(img.width, img.height);
  const full = document.createElement("canvas");
  full.width = width;
  full.height = height;
  const ctx = full.getContext("2d");
  ctx.drawImage(img, (img.width - side) / 2, (img.height - side) / 2, side, side, 0, 0, width, height);
  const patch = document.createElement("canvas");
  patch.width = box.width;
  patch.height = box.height;
  patch.getContext("2d").drawImage(full, box.left, box.top, box.width, box.height, 0, 0, box.width, box.height);
  const framed = document.createElement("canvas");
  framed.width = width;
  framed.height = height;
  const fctx = framed.getContext("2d");
  fctx.fillStyle = "#888";
  fctx.fillRect(0, 0, width, height);
  fctx.drawImage(patch, box.left, box.top);
  fctx.strokeStyle = "#e33";
  fctx.strokeRect(box.left - 0.5, box.top - 0.5, box.width + 1, box.height + 1);
  return { patch: base64Of(patch.toDataURL("image/png")), framed: framed.toDataURL("image/png") };
}

async function outpaint() {
  const errorBox = $("outpaint-error");
  $("outpaint-results").replaceChildren();
  if (!state.input) {
    showError(errorBox, new Error("upload or pick an image first"));
    return;
  }
  try {
    let patch = state.input;
    let framed = null;
    if (state.outpaint) {
      const { width, height } = state.model.image;
      ({ patch, framed } = await patchOf(state.input, state.outpaint.patch, width, height));
    }
    const body = {
      model: state.model.name,
      patch,
      samples: Number($("outpaint-samples").value),
      seed: Number($("outpaint-seed").value),
    };
    const answer = await api("POST", "/outpaint", body);
    const shown = [];
    if (framed) shown.push(figure(image(base64Of(framed), "the patch in its box"), "patch"));
    answer.samples.forEach((sample, i) => shown.push(figure(image(sample.image_png, `sample ${i}`), `#${i}`)));
    $("outpaint-results").replaceChildren(...shown);
    clearError(errorBox);
  } catch (error) {
    showError(errorBox, error);
  }
}

// ---- metric jobs ----

// Class consistency needs the bundle's classifier graph (the data set's judge); a bundle made from a user's own GAN
// may ship none, and the API refuses the metric for it (422). Offer only what the selected bundle can measure.
function renderJobMetrics() {
  const box = document.querySelector("#job-metrics input[value=class_consistency]");
  const judged = "classifier" in state.model.graphs;
  if (judged && box.disabled) box.checked = box.defaultChecked; // back from a bundle without one
  if (!judged) box.checked = false;
  box.disabled = !judged;
  $("job-metrics-note").textContent = judged ? "" : `(${state.model.name} has no classifier graph)`;
}

// An invert job has no metrics to choose; it may also return G(z) of every image.
function renderJobKind() {
  const invert = $("job-kind").value === "invert";
  $("job-metrics").hidden = invert;
  $("job-recon-option").hidden = !invert;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["kB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function renderChunks(job) {
  const chunks = job.chunks;
  const box = $("job-chunks");
  if (!chunks) {
    box.textContent = "";
    return;
  }
  const parts = [`chunks ${chunks.done}/${chunks.total} done`, `${chunks.running} running`];
  if (chunks.failed) parts.push(`${chunks.failed} failed`);
  if (job.chunk_runs > chunks.total) parts.push(`${job.chunk_runs - chunks.total} re-run(s)`);
  const workers = job.workers || [];
  parts.push(`workers: ${workers.length ? workers.join(", ") : "none yet"}`);
  box.textContent = parts.join(" · ");
}

function hideDownload() {
  const link = $("job-download");
  link.hidden = true;
  link.removeAttribute("href");
  link.removeAttribute("download");
  link.textContent = "";
}

// A complete job's result: the .npz of an invert job (streamed by the service), the JSON of a metric job.
function showDownload(job) {
  const link = $("job-download");
  const invert = job.kind === "invert";
  link.href = (invert && job.result.download) || `/jobs/${job.id}/result`;
  link.download = `dfi-${job.id}.${invert ? "npz" : "json"}`;
  link.textContent = invert
    ? `Download latents (.npz${job.result.bytes === undefined ? "" : `, ${formatBytes(job.result.bytes)}`})`
    : "Download result (.json)";
  link.hidden = false;
}

// Without an API key the link is an ordinary download (the browser streams it to disk). A link cannot send the
// X-API-Key header, so with a key the result is fetched with it and saved from a blob URL instead.
async function downloadResult(event) {
  if (!apiKey()) return;
  event.preventDefault();
  const link = event.currentTarget;
  const path = link.getAttribute("href");
  const errorBox = $("job-error");
  try {
    let response;
    try {
      response = await fetch(path, { headers: { "x-api-key": apiKey() } });
    } catch (error) {
      throw new ApiError("GET", path, 0, `network error (${error.message}); is the service running?`);
    }
    if (!response.ok) {
      const text = await response.text();
      let message = text.slice(0, 300) || response.statusText || "no body";
      try {
        message = JSON.parse(text).error.message || message;
      } catch {
        // not the service's JSON error: keep the text
      }
      throw new ApiError("GET", path, response.status, message, { requestId: response.headers.get("x-request-id") });
    }
    download(link.download, await response.blob());
    clearError(errorBox);
  } catch (error) {
    showError(errorBox, error);
  }
}

function renderJob(job) {
  const progress = $("job-progress");
  progress.value = job.progress;
  const percent = `${(100 * job.progress).toFixed(0)}%`;
  const tries = job.attempts > 1 ? ` · attempt ${job.attempts}` : "";
  $("job-status").textContent = `job ${job.id}: ${job.status} · ${percent}${tries}`;
  $("job-cancel").disabled = FINISHED.has(job.status);
  renderChunks(job);
  if (job.status === "complete" && job.result) {
    if (job.kind === "invert") {
      const r = job.result;
      const skipped = r.skipped ? ` · ${r.skipped} skipped` : "";
      $("job-status").textContent += ` · ${r.n} latents, z [${(r.z_shape || []).join(", ")}]${skipped}`;
    } else {
      const rows = Object.entries(job.result.metrics).map(([name, m]) => {
        const row = document.createElement("tr");
        row.dataset.metric = name;
        for (const text of [name, `${m.mean.toFixed(4)} ± ${m.std.toFixed(4)}`, String(m.n)]) {
          row.append(Object.assign(document.createElement("td"), { textContent: text }));
        }
        return row;
      });
      $("job-table").querySelector("tbody").replaceChildren(...rows);
      $("job-table").hidden = false;
      renderPerClass(job.result.per_class);
      const seconds = job.result.seconds === undefined ? "" : ` in ${job.result.seconds} s`;
      $("job-status").textContent += ` · ${job.result.method} on ${job.result.n} images${seconds}`;
    }
    showDownload(job);
  } else {
    hideDownload();
  }
  if (job.status === "failed" || job.status === "aborted") {
    showError($("job-error"), new Error(`job ${job.status}: ${job.error || "no error message"}`));
  }
}

// A per_class result (dfi_core.per_class): one bar per class of the flag metric (PSNR, else the first metric),
// scaled from the lowest to the highest class mean; flagged classes in red, the rule in the caption.
function renderPerClass(perClass) {
  const figure = $("job-per-class-bars");
  figure.hidden = !perClass;
  if (!perClass) return;
  const metric = ["psnr", "ssim", "class_consistency"].find((m) => perClass.classes.some((c) => perClass.by_class[c][m]));
  if (!metric) {
    figure.hidden = true;
    return;
  }
  const flagged = new Set((perClass.flags[metric] || {}).flagged || []);
  const means = perClass.classes.map((c) => (perClass.by_class[c][metric] || {}).mean);
  const known = means.filter((m) => m !== undefined);
  const low = Math.min(...known);
  const span = Math.max(...known) - low || 1;
  const cells = [];
  perClass.classes.forEach((name, i) => {
    const mean = means[i];
    const bar = document.createElement("div");
    bar.className = flagged.has(name) ? "bar flagged" : "bar";
    bar.dataset.class = name;
    bar.style.width = mean === undefined ? "0" : `${5 + (95 * (mean - low)) / span}%`;
    const n = perClass.by_class[name].n;
    const label = `${mean === undefined ? "–" : mean.toFixed(3)} (n ${n})${flagged.has(name) ? " flagged" : ""}`;
    cells.push(Object.assign(document.createElement("span"), { textContent: name }), bar,
      Object.assign(document.createElement("span"), { textContent: label }));
  });
  figure.querySelector(".bars").replaceChildren(...cells);
  const fd = perClass.fd && perClass.fd.n_per_class ? ` · FD per class at n = ${perClass.fd.n_per_class}` : "";
  figure.querySelector("figcaption").textContent =
    `${metric} per class; flagged: ${perClass.flagged.length ? perClass.flagged.join(", ") : "none"} — ` +
    `${perClass.rule.text}${fd}`;
}

function jobBody() {
  const body = {
    model: state.model.name,
    kind: $("job-kind").value,
    n: Number($("job-n").value),
    refine_steps: Number($("job-refine").value) || 0,
  };
  if (body.kind === "invert") body.return_reconstructions = $("job-recon").checked;
  else {
    body.metrics = [...document.querySelectorAll("#job-metrics input[value]:checked")].map((input) => input.value);
    if ($("job-per-class").checked) body.per_class = true;
  }
  return body;
}

async function submitJob() {
  clearTimeout(state.pollTimer);
  state.job = null; // answers of the previous job's polls are dropped from here on
  const errorBox = $("job-error");
  clearError(errorBox);
  $("job-table").hidden = true;
  $("job-per-class-bars").hidden = true;
  $("job-progress").value = 0;
  $("job-chunks").textContent = "";
  $("job-cancel").disabled = true;
  hideDownload();
  try {
    const job = await api("POST", "/jobs", jobBody());
    state.job = job.id;
    renderJob(job);
    state.pollTimer = setTimeout(() => poll(job.id), POLL_MS);
  } catch (error) {
    $("job-status").textContent = "not submitted";
    showError(errorBox, error);
  }
}

async function poll(id) {
  if (id !== state.job) return;
  try {
    const job = await api("GET", `/jobs/${id}`);
    if (id !== state.job) return;
    clearError($("job-error"));
    renderJob(job);
    if (FINISHED.has(job.status)) return;
  } catch (error) {
    showError($("job-error"), error);
    if (error.status >= 400 && error.status < 500) return; // e.g. the job expired: asking again will not help
  }
  state.pollTimer = setTimeout(() => poll(id), POLL_MS);
}

async function cancelJob() {
  if (!state.job) return;
  try {
    renderJob(await api("DELETE", `/jobs/${state.job}`));
  } catch (error) {
    showError($("job-error"), error);
  }
}

// ---- wiring ----

async function pickFile(input, onPick) {
  const file = input.files[0];
  if (!file) return;
  try {
    onPick(await readAsDataUrl(file));
  } catch (error) {
    showError($("global-error"), error);
  }
}

async function main() {
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  $("file").addEventListener("change", (e) => pickFile(e.target, setInput));
  $("file-b").addEventListener("change", (e) => pickFile(e.target, setInputB));
  $("refine-steps").addEventListener("change", () => state.input && invert());
  $("latent-source").addEventListener("change", () => {
    showLatent();
    scheduleEdit(0);
  });
  $("copy-latent").addEventListener("click", copyLatent);
  $("download-json").addEventListener("click", () => {
    const text = JSON.stringify({ model: state.model.name, method: $("latent-source").value, latent: currentLatent() });
    download(latentFileName("json"), new Blob([text + "\n"], { type: "application/json" }));
  });
  $("download-npy").addEventListener("click", () => {
    download(latentFileName("npy"), new Blob([npyFloat32(currentLatent())], { type: "application/octet-stream" }));
  });
  $("reset-sliders").addEventListener("click", resetSliders);
  $("interpolate").addEventListener("click", interpolate);
  $("outpaint").addEventListener("click", outpaint);
  $("outpaint-reseed").addEventListener("click", () => {
    $("outpaint-seed").value = String(Math.floor(Math.random() * 1e6));
    outpaint();
  });
  $("job-kind").addEventListener("change", renderJobKind);
  renderJobKind(); // a reload may keep the form's last choice
  $("job-download").addEventListener("click", downloadResult);
  $("job-submit").addEventListener("click", submitJob);
  $("job-cancel").addEventListener("click", cancelJob);
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => {
    setApiKey(e.target.value.trim());
    loadModels();
  });
  try {
    const response = await fetch("/static/samples/index.json");
    if (!response.ok) throw new Error(`GET /static/samples/index.json → ${response.status}`);
    state.samples = await response.json();
  } catch (error) {
    showError($("global-error"), error);
  }
  await loadModels();
}

main();
