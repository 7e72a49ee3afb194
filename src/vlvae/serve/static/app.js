// The page of `vlvae serve`: builds the text entry from /api/vocab, asks the JSON API, shows the answers.
// The URL holds the query (tab, text, n, seed, image), so a view can be shared and reproduced.
"use strict";

const $ = (id) => document.getElementById(id);
let vocab = null;
const TABS = ["text", "prior", "image", "report"];
let imageQuery = null; // the validation index shown, for the URL

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function setStatus(message, kind = "") {
  const status = $("status");
  status.textContent = message;
  status.className = "status " + kind;
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = { detail: `the server answered ${response.status} without JSON` };
  }
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ settings and the URL

// A whole number in [low, high] from a box or a link, or null.
function wholeNumber(text, low, high) {
  const value = String(text).trim();
  if (!/^\d+$/.test(value)) return null;
  const number = Number(value);
  return number >= low && number <= high ? number : null;
}

function limits() {
  return { maxSamples: vocab ? vocab.max_samples : 64, maxSeed: vocab ? vocab.max_seed : 2147483647 };
}

// The boxes' values as the API takes them; a value outside its range is an error that names the range,
// never silently replaced.
function settings() {
  const { maxSamples, maxSeed } = limits();
  const n = wholeNumber($("n").value, 1, maxSamples);
  if (n === null) throw new Error(`samples must be a whole number from 1 to ${maxSamples}, not "${$("n").value}"`);
  const s = wholeNumber($("seed").value, 0, maxSeed);
  if (s === null) throw new Error(`the seed must be a whole number from 0 to ${maxSeed}, not "${$("seed").value}"`);
  return { n, seed: s };
}

function currentTab() {
  const selected = document.querySelector('[role="tab"][aria-selected="true"]');
  return selected ? selected.dataset.tab : "text";
}

function updateUrl() {
  const params = new URLSearchParams();
  const tab = currentTab();
  if (tab !== "text") params.set("tab", tab);
  if (tab === "text") params.set("text", $("text").value.trim());
  if (tab === "text" || tab === "prior") {
    params.set("n", $("n").value.trim());
    params.set("seed", $("seed").value.trim());
  }
  if (tab === "image" && imageQuery !== null) params.set("image", String(imageQuery));
  const query = params.toString();
  history.replaceState(null, "", query ? "?" + query : location.pathname);
  $("permalink").href = location.href;
}

function showTab(tab) {
  for (const name of TABS) {
    $("tab-" + name).hidden = name !== tab;
    $("tab-button-" + name).setAttribute("aria-selected", String(name === tab));
  }
  document.querySelector(".controls").classList.toggle("inactive", tab === "image" || tab === "report");
  setStatus("");
  if (tab === "report") loadReport();
  updateUrl();
}

// ------------------------------------------------------------------ the text entry

function textWords() {
  return $("text").value.trim().split(/\s+/).filter((w) => w);
}

function buildSlots() {
  const box = $("slots");
  box.replaceChildren();
  if (vocab.layout === "free") {
    // Free captions: any words; words outside the vocabulary are read as the unknown word.
    box.append(el("p", { class: "hint", text: `any text of up to ${vocab.text_length - 1} words; words the model never saw are flagged` }));
    return;
  }
  if (vocab.layout === "attributes") {
    // A set of attributes, padded with the blank word.
    const list = el("fieldset", { class: "attributes" }, el("legend", { text: `attributes (at most ${vocab.text_length})` }));
    for (const word of vocab.words.filter((w) => w !== vocab.blank)) {
      const check = el("input", { type: "checkbox", value: word });
      check.addEventListener("change", fromAttributes);
      list.append(el("label", { class: "attribute" }, check, document.createTextNode(" " + word)));
    }
    box.append(list);
    return;
  }
  vocab.slots.forEach((words, i) => {
    const select = el("select", { "data-slot": String(i), "aria-label": vocab.slot_names[i] || `word ${i + 1}` });
    for (const word of words) select.append(el("option", { value: word, text: word }));
    select.addEventListener("change", fromSlots);
    box.append(el("label", { class: "slot" }, el("span", { text: vocab.slot_names[i] || `word ${i + 1}` }), select));
  });
}

function fromSlots() {
  $("text").value = [...document.querySelectorAll("#slots select")].map((s) => s.value).join(" ");
  markSlots();
}

function fromAttributes() {
  const checked = [...document.querySelectorAll("#slots input:checked")].map((c) => c.value);
  const words = checked.slice(0, vocab.text_length);
  while (words.length < vocab.text_length) words.push(vocab.blank);
  $("text").value = words.join(" ");
  markSlots();
}

// The drop-downs follow the typed text; a word that is not among a slot's choices is marked.
function markSlots() {
  const words = textWords();
  if (vocab.layout === "free") return;
  if (vocab.layout === "attributes") {
    for (const box of document.querySelectorAll("#slots input")) box.checked = words.includes(box.value);
    return;
  }
  document.querySelectorAll("#slots select").forEach((select, i) => {
    const word = words[i];
    const fits = word !== undefined && [...select.options].some((o) => o.value === word);
    if (fits) select.value = word;
    select.classList.toggle("mismatch", !fits);
  });
}

// ------------------------------------------------------------------ results

// The readings of a text that describe the same scene: itself and, for Two Objects, "O2 R' O1".
function readings(text) {
  const words = text.split(" ");
  const opposite = vocab.opposite_relations;
  if (!opposite || words.length !== 9 || !(words[4] in opposite)) return [words];
  return [words, [...words.slice(5), opposite[words[4]], ...words.slice(0, 4)]];
}

// The reading of ``reference`` closest to ``words`` (most equal words), to mark the words that differ.
function closest(words, reference) {
  let best = null;
  let bestScore = -1;
  for (const reading of readings(reference)) {
    const score = reading.filter((w, i) => w === words[i]).length;
    if (score > bestScore) [best, bestScore] = [reading, score];
  }
  return best;
}

function figure(sample, reference) {
  const img = el("img", { src: sample.image, alt: "decoded: " + sample.caption });
  const caption = el("figcaption", { class: "caption" });
  const words = sample.caption.split(" ");
  const wanted = reference ? closest(words, reference) : [];
  words.forEach((word, i) => {
    const span = el("span", { text: word });
    if (reference && wanted[i] !== word) span.className = "differs";
    caption.append(span, document.createTextNode(" "));
  });
  const fig = el("figure", { class: "sample" }, img, caption);
  if (sample.correctness !== null && sample.correctness !== undefined) {
    fig.append(el("div", { class: "correctness", text: `correctness ${Math.round(100 * sample.correctness)} %` }));
  }
  return fig;
}

function renderColumns(box, columns, reference) {
  box.replaceChildren();
  for (const column of columns) {
    const div = el("div", { class: "column" + (column.available ? "" : " missing"), "data-name": column.name });
    div.append(el("h2", { text: column.label }));
    if (!column.available) {
      div.append(el("p", { class: "detail", text: column.detail }));
    } else {
      const scores = column.samples.map((s) => s.correctness).filter((c) => c !== null && c !== undefined);
      if (scores.length) {
        const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
        div.append(el("p", { class: "mean", text: `mean correctness ${(100 * mean).toFixed(1)} %` }));
      }
      const grid = el("div", { class: "grid" });
      for (const sample of column.samples) grid.append(figure(sample, reference));
      div.append(grid);
    }
    box.append(div);
  }
}

// Columns for stages the run lacks are greyed out before anything is asked.
function placeholderColumns(box, options, stageOf) {
  renderColumns(box, Object.entries(options).map(([name, label]) => {
    const stage = stageOf(name);
    const missing = stage && vocab.missing[stage];
    return { name, label, available: !missing, detail: missing || "", samples: [] };
  }));
}

// Runs one request; on failure the error replaces the tab's previous result (``clear``), so that no
// earlier answer stands beside it as if it were the answer to this one.
async function busy(button, work, clear) {
  button.disabled = true;
  document.body.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (e) {
    if (clear) clear();
    setStatus(e.message, "error");
  } finally {
    button.disabled = false;
    document.body.removeAttribute("aria-busy");
  }
}

function clearText() {
  placeholderColumns($("text-results"), vocab.posteriors, (name) => vocab.posterior_stages[name]);
}

function clearPrior() {
  placeholderColumns($("prior-results"), vocab.priors, (name) => vocab.prior_stages[name]);
}

function clearImage() {
  $("image-results").replaceChildren();
  imageQuery = null;
  updateUrl();
}

async function generate() {
  const text = textWords().join(" ");
  updateUrl();
  await busy($("generate"), async () => {
    const { n, seed } = settings();
    setStatus("generating…");
    const params = new URLSearchParams({ text, posterior: "both", n: String(n), seed: String(seed) });
    const answer = await api("/api/text?" + params);
    renderColumns($("text-results"), answer.columns, answer.text);
    const unknown = (answer.unknown_words || []).length
      ? `; not in the vocabulary (read as unknown): ${answer.unknown_words.join(", ")}`
      : "";
    setStatus(`${answer.n} samples per posterior from "${answer.text}", seed ${answer.seed}${unknown}`, "ok");
  }, clearText);
}

async function samplePrior() {
  updateUrl();
  await busy($("sample-prior"), async () => {
    const { n, seed } = settings();
    setStatus("sampling…");
    const params = new URLSearchParams({ prior: "both", n: String(n), seed: String(seed) });
    const answer = await api("/api/prior?" + params);
    renderColumns($("prior-results"), answer.columns, null);
    setStatus(`${answer.n} samples per prior, seed ${answer.seed}`, "ok");
  }, clearPrior);
}

function renderImage(answer, title) {
  const box = $("image-results");
  box.replaceChildren();
  const pair = el("div", { class: "pair" },
    el("figure", { class: "sample" }, el("img", { src: answer.image, alt: "input image" }), el("figcaption", { text: title })),
    el("figure", { class: "sample" }, el("img", { src: answer.reconstruction, alt: "reconstruction" }),
      el("figcaption", { text: "reconstruction" })));
  const facts = el("dl", { class: "facts" });
  if (answer.text) facts.append(el("dt", { text: "its text" }), el("dd", { text: answer.text }));
  const caption = el("dd", { class: "caption" });
  const captionWords = answer.caption.split(" ");
  const wanted = answer.text ? closest(captionWords, answer.text) : null;
  captionWords.forEach((word, i) => {
    caption.append(el("span", { text: word, class: wanted && wanted[i] !== word ? "differs" : "" }), document.createTextNode(" "));
  });
  facts.append(el("dt", { text: "caption" }), caption);
  if (answer.correctness !== null && answer.correctness !== undefined) {
    facts.append(el("dt", { text: "correctness of the caption" }), el("dd", { text: `${Math.round(100 * answer.correctness)} %` }));
  }
  if (answer.text_correctness !== undefined) {
    facts.append(el("dt", { text: "correctness of its text" }), el("dd", { text: `${Math.round(100 * answer.text_correctness)} % (the classifier on the real image)` }));
  }
  box.append(pair, facts);
}

// Validation images are numbered from 0, as the API (/api/validation/{index}) and the link number them.
function validationName(index, count) {
  return `validation image ${index} (of ${count}, numbered 0 to ${count - 1}, from the validation split)`;
}

// ``which``: "random" or the text of an index (from the box or a link), checked before anything is asked.
async function showValidation(which, button) {
  await busy(button, async () => {
    if (which !== "random") {
      const count = vocab.validation_count;
      const index = wholeNumber(which, 0, Math.max(0, count - 1));
      if (index === null || count === 0) {
        throw new Error(count === 0 ? "the validation split has no images"
          : `no validation image "${which}": they are numbered 0 to ${count - 1}`);
      }
      which = String(index);
    }
    setStatus("encoding…");
    const answer = await api("/api/validation/" + which);
    imageQuery = answer.index;
    $("image-index").value = answer.index;
    updateUrl();
    renderImage(answer, validationName(answer.index, answer.count));
    setStatus(validationName(answer.index, answer.count), "ok");
  }, clearImage);
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  if (file.size > vocab.max_upload_bytes) {
    clearImage();
    setStatus(`${file.name} has ${file.size.toLocaleString()} bytes, more than the limit of ${vocab.max_upload_bytes.toLocaleString()}`, "error");
    return;
  }
  await busy($("upload"), async () => {
    setStatus("encoding…");
    const answer = await api("/api/caption", {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    imageQuery = null;
    updateUrl();
    renderImage(answer, `${file.name} (${answer.resized_from[0]} × ${answer.resized_from[1]}, resized)`);
    setStatus(`captioned ${file.name}`, "ok");
  }, clearImage);
}

let reportLoaded = false;
async function loadReport() {
  if (reportLoaded) return;
  reportLoaded = true;
  const response = await fetch("/report");
  if (response.ok) {
    $("report-frame").src = "/report";
    $("report-frame").hidden = false;
  } else {
    let detail = `the server answered ${response.status}`;
    try { detail = (await response.json()).detail; } catch (e) { /* keep the status */ }
    $("report-missing").textContent = detail;
    $("report-missing").hidden = false;
  }
}

// ------------------------------------------------------------------ start

function showStages() {
  $("run").textContent = vocab.run || "";
  const box = $("stages");
  box.replaceChildren();
  for (const [stage, present] of Object.entries(vocab.stages)) {
    box.append(el("span", { class: "stage " + (present ? "present" : "absent"), title: vocab.missing[stage] || "trained", text: stage }));
  }
  if (vocab.classifier) box.append(el("span", { class: "stage present", text: "classifier" }));
  for (const node of document.querySelectorAll(".when-classifier")) node.hidden = !vocab.classifier;
}

// Why the model cannot read these words (null when it can), as the API would answer: a text of word
// slots needs one word of each slot; a set of attributes, known attributes; free text takes any words.
function textProblem(words) {
  if (vocab.layout === "free") return null;
  if (words.length !== vocab.text_length) return `${words.length} words, the model reads ${vocab.text_length}`;
  if (vocab.layout === "attributes") {
    const unknown = words.filter((w) => !vocab.words.includes(w));
    return unknown.length ? `unknown attribute ${unknown.map((w) => JSON.stringify(w)).join(", ")}` : null;
  }
  const i = words.findIndex((w, slot) => !vocab.slots[slot].includes(w));
  return i < 0 ? null : `${JSON.stringify(words[i])} is not a word of slot ${vocab.slot_names[i] || i + 1}`;
}

// The link's values that cannot be used, each with why: {name: message}.
function linkProblems(params) {
  const { maxSamples, maxSeed } = limits();
  const problems = {};
  const check = (name, low, high, what) => {
    if (params.has(name) && wholeNumber(params.get(name), low, high) === null) {
      problems[name] = `${name}=${JSON.stringify(params.get(name))} (${what})`;
    }
  };
  check("n", 1, maxSamples, `samples: a whole number from 1 to ${maxSamples}; ${$("n").value} used`);
  check("seed", 0, maxSeed, `a whole number from 0 to ${maxSeed}; ${$("seed").value} used`);
  const count = vocab.validation_count;
  if (params.has("image")) {
    check("image", 0, Math.max(0, count - 1), count ? `validation images are numbered 0 to ${count - 1}` : "the validation split has no images");
    if (!count) problems.image = `image=${JSON.stringify(params.get("image"))} (the validation split has no images)`;
  }
  if ((params.get("text") || "").trim()) {
    const wrong = textProblem(params.get("text").trim().split(/\s+/).filter((w) => w));
    if (wrong) problems.text = `text=${JSON.stringify(params.get("text"))} (${wrong}; kept in the box to correct)`;
  }
  if (params.has("tab") && !TABS.includes(params.get("tab"))) {
    problems.tab = `tab=${JSON.stringify(params.get("tab"))} (one of ${TABS.join(", ")}; the text tab shown)`;
  }
  return problems;
}

async function start() {
  try {
    const [answer, health] = await Promise.all([api("/api/vocab"), api("/api/health")]);
    vocab = answer;
    vocab.run = health.run;
  } catch (e) {
    setStatus("cannot read the run's vocabulary: " + e.message, "error");
    return;
  }
  showStages();
  buildSlots();
  $("n").max = String(vocab.max_samples);
  $("seed").max = String(vocab.max_seed);
  $("image-index").max = String(Math.max(0, vocab.validation_count - 1));
  $("image-range").textContent = vocab.validation_count ? `(0 to ${vocab.validation_count - 1})` : "(none)";
  const params = new URLSearchParams(location.search);
  const ignored = linkProblems(params);
  if (params.has("n") && !ignored.n) $("n").value = params.get("n");
  if (params.has("seed") && !ignored.seed) $("seed").value = params.get("seed");
  const text = params.get("text");
  $("text").value = text || vocab.example || vocab.slots.map((s) => s[0]).join(" ");
  markSlots();
  // The stage behind each column comes from the API (the stage registry), not from its name.
  placeholderColumns($("text-results"), vocab.posteriors, (name) => vocab.posterior_stages[name]);
  placeholderColumns($("prior-results"), vocab.priors, (name) => vocab.prior_stages[name]);

  for (const button of document.querySelectorAll('[role="tab"]')) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("text-form").addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  $("text").addEventListener("input", markSlots);
  $("sample-prior").addEventListener("click", samplePrior);
  $("random-image").addEventListener("click", () => showValidation("random", $("random-image")));
  $("show-image").addEventListener("click", () => showValidation($("image-index").value, $("show-image")));
  $("upload").addEventListener("change", upload);
  $("new-seed").addEventListener("click", () => { $("seed").value = String(Math.floor(Math.random() * 1e6)); updateUrl(); });
  for (const id of ["seed", "n"]) $(id).addEventListener("change", updateUrl);

  const tab = ignored.tab ? "text" : params.get("tab") || "text";
  showTab(tab);
  document.body.dataset.ready = "true";
  const problems = Object.values(ignored);
  if (problems.length) {
    // A bad value of the link is named at once (and its default used), not when a button is pressed.
    setStatus(`ignored from the link: ${problems.join("; ")}`, "error");
    return;
  }
  if (tab === "text" && text) await generate();
  if (tab === "prior" && (params.has("n") || params.has("seed"))) await samplePrior();
  if (tab === "image" && params.has("image")) await showValidation(params.get("image"), $("show-image"));
}

start();
