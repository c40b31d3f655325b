// The console's only script (no inline script: the Content-Security-Policy forbids it).
// Live regions: an element with data-live="/console/live/..." is refreshed every
// data-every seconds from that URL (server-rendered, escaped HTML).
"use strict";
(function () {
  function refresh(region) {
    fetch(region.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error(String(answer.status)); }
        return answer.text();
      })
      .then(function (html) {
        region.innerHTML = html;
        region.classList.remove("stale");
        region.dataset.refreshed = String(Date.now());
      })
      .catch(function () { region.classList.add("stale"); });
  }
  document.querySelectorAll("[data-live]").forEach(function (region) {
    var every = Math.max(1, Number(region.dataset.every || 5)) * 1000;
    window.setInterval(function () { refresh(region); }, every);
  });
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      box.form.querySelectorAll("input[name=id]").forEach(function (one) { one.checked = box.checked; });
    });
  });
})();
