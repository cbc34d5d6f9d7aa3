// paas dashboard: live sections, live log streams (SSE), copy buttons. No build step.
"use strict";

function refreshLive(el) {
  const every = Number(el.dataset.live) * 1000;
  setInterval(async () => {
    if (document.hidden) return;
    const active = document.activeElement;
    if (active && el.contains(active) && active.matches("input, select, textarea")) return;
    try {
      const response = await fetch(location.href, { headers: { "X-Live": "1" } });
      if (!response.ok || response.redirected) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById(el.id);
      if (fresh && fresh.innerHTML !== el.innerHTML) {
        const focusId = active && el.contains(active) ? active.id : null;
        el.innerHTML = fresh.innerHTML;
        if (focusId && document.getElementById(focusId)) document.getElementById(focusId).focus();
      }
    } catch (_) { /* the next tick tries again */ }
  }, every);
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}

function logLine(data) {
  const line = document.createElement("span");
  line.className = "ln";
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = data.time;
  const src = document.createElement("span");
  src.className = "src src-" + data.source.split("[")[0];
  src.textContent = data.source + ":";
  line.append(t, " ", src, " " + data.line);
  return line;
}

function follow(el) {
  const source = new EventSource(el.dataset.stream);
  const badge = document.getElementById("live-badge");
  source.onmessage = (event) => {
    const stick = nearBottom(el);
    const data = JSON.parse(event.data);
    if (el.dataset.format === "log") {
      el.append(logLine(data), "\n");
      const empty = document.getElementById("no-lines");
      if (empty) empty.remove();
    } else {
      el.append(data + "\n");
    }
    if (stick) el.scrollTop = el.scrollHeight;
  };
  source.addEventListener("end", (event) => {
    source.close();
    const data = JSON.parse(event.data);
    if (data.message) el.append(data.message + "\n");
    if (badge) badge.textContent = data.ok ? "done" : "failed";
    if (el.dataset.onEnd === "reload") setTimeout(() => location.reload(), 800);
  });
  source.onerror = () => { if (badge) badge.classList.add("paused"); };
  source.onopen = () => { if (badge) badge.classList.remove("paused"); };
}

function copyButton(button) {
  button.addEventListener("click", async () => {
    const input = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      input.select();
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refreshLive);
  document.querySelectorAll("[data-stream]").forEach((el) => {
    if (el.dataset.format === "log") el.scrollTop = el.scrollHeight;
    follow(el);
  });
  document.querySelectorAll("[data-copy]").forEach(copyButton);
});
