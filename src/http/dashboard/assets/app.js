// CollabKit dashboard: the little script the pages use. Copy buttons, confirmations before
// destructive forms, and live online counts over server-sent events. Pages work without it.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  field.select();
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(done, () => document.execCommand("copy") && done());
  } else if (document.execCommand("copy")) {
    done();
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

function followLiveCounts() {
  const holders = document.querySelectorAll("[data-live]");
  const ids = [];
  for (const holder of holders) {
    for (const id of holder.dataset.live.split(",")) {
      if (id) ids.push(id);
    }
  }
  if (ids.length === 0 || !window.EventSource) return;
  const source = new EventSource(`/dashboard/rooms/live?ids=${encodeURIComponent(ids.join(","))}`);
  source.onmessage = (message) => {
    const counts = JSON.parse(message.data);
    for (const [room, count] of Object.entries(counts)) {
      for (const cell of document.querySelectorAll(`.online[data-room="${room}"]`)) {
        cell.textContent = String(count);
      }
    }
  };
}

document.addEventListener("DOMContentLoaded", followLiveCounts);
