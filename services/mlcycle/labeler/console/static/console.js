// The review page: a key per class, skip and undo; the next card is fetched ahead of time.
// Labels and undos are POSTed with the page's CSRF token; the server checks the key's scope.
// What undo can take back is kept in the tab's sessionStorage, per reviewer, so a reload or
// a visit to another page of the console does not lose it.
"use strict";
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("status");
  const canLabel = queue.dataset.canLabel === "true";
  const MAX_UNDO = 100;  // labels a tab remembers for undo
  const handled = [];   // item ids labeled or skipped on this page, oldest first
  const historyKey = "mlcycle.console.labeled:" + (queue.dataset.reviewer || "");
  const labeled = loadHistory(); // {itemId, task} of this tab's labels, for undo
  let prefetched = null; // {skip: string, html: Promise<string>}
  let busy = false;

  function say(text) { status.textContent = text; }

  function loadHistory() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(historyKey) || "[]");
      return Array.isArray(stored)
        ? stored.filter((l) => l && typeof l.itemId === "string" && typeof l.task === "string")
        : [];
    } catch (error) {
      return []; // storage refused (privacy settings) or garbled: undo covers this page
    }
  }

  function saveHistory() {
    try {
      sessionStorage.setItem(historyKey, JSON.stringify(labeled));
    } catch (error) { /* storage refused: undo still covers this page */ }
  }

  function card() { return document.getElementById("card"); }

  function cardUrl(skip, item) {
    const params = new URLSearchParams();
    for (const name of ["task", "split", "source", "reason"]) {
      if (queue.dataset[name]) params.set(name, queue.dataset[name]);
    }
    for (const id of skip) params.append("skip", id);
    if (item) params.set("item", item);
    return "/console/queue/card?" + params.toString();
  }

  function fetchCard(skip, item) {
    return fetch(cardUrl(skip, item), { credentials: "same-origin" }).then((answer) => {
      if (!answer.ok) throw new Error("the queue answered " + answer.status);
      return answer.text();
    });
  }

  function prefetch() {
    const current = card();
    const skip = handled.slice();
    if (current && current.dataset.itemId && !skip.includes(current.dataset.itemId)) {
      skip.push(current.dataset.itemId);
    }
    prefetched = { key: skip.join("\n"), html: fetchCard(skip) };
    prefetched.html.catch(() => {});
  }

  function show(html) {
    queue.innerHTML = html;
    const next = card();
    if (next) next.focus({ preventScroll: true });
    prefetch();
  }

  function showNext() {
    const key = handled.join("\n");
    const html = prefetched && prefetched.key === key ? prefetched.html : fetchCard(handled);
    return html.then(show);
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }).then((answer) => answer.json().then((data) => {
      if (!answer.ok) throw new Error((data.error && data.error.message) || answer.statusText);
      return data;
    }));
  }

  function run(action) {
    if (busy) return;
    busy = true;
    action().catch((error) => say(error.message)).finally(() => { busy = false; });
  }

  function label(value) {
    const current = card();
    if (!current || !current.dataset.itemId) return;
    if (!canLabel) { say("Your key cannot label: it lacks the label scope."); return; }
    if (value >= Number(current.dataset.classes)) return;
    const itemId = current.dataset.itemId, task = current.dataset.task;
    run(() => post("/console/labels", { item_id: itemId, label: value, task: task }).then(() => {
      handled.push(itemId);
      labeled.push({ itemId: itemId, task: task });
      if (labeled.length > MAX_UNDO) labeled.shift();
      saveHistory();
      say("Labeled " + itemId + ". " + labeled.length + " to undo in this tab.");
      return showNext();
    }));
  }

  function skip() {
    const current = card();
    if (!current || !current.dataset.itemId) return;
    run(() => { handled.push(current.dataset.itemId); say("Skipped."); return showNext(); });
  }

  function undo() {
    if (!canLabel) { say("Your key cannot label: it lacks the label scope."); return; }
    const last = labeled[labeled.length - 1];
    if (!last) { say("Nothing to undo."); return; }
    run(() => post("/console/retractions", { item_id: last.itemId, task: last.task }).then(() => {
      labeled.pop();
      saveHistory();
      const seen = handled.lastIndexOf(last.itemId);
      if (seen >= 0) handled.splice(seen, 1);
      say("Undid the label of " + last.itemId + ".");
      return fetchCard(handled, last.itemId).then(show);
    }));
  }

  queue.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    if (button.dataset.label !== undefined) label(Number(button.dataset.label));
    else if (button.id === "skip") skip();
    else if (button.id === "undo") undo();
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches && target.matches("input, select, textarea")) return;
    if (/^[0-9]$/.test(event.key)) { event.preventDefault(); label(Number(event.key)); }
    else if (event.key === "s") { event.preventDefault(); skip(); }
    else if (event.key === "u") { event.preventDefault(); undo(); }
  });

  prefetch();
})();
