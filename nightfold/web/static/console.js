// nightfold console: live regions without reloading the page (progressive
// enhancement: every page works without this script, it only keeps them fresh).
// An element with data-live="URL" is refetched every data-every ms; the server
// answers 204 when nothing changed since data-version (X-Version), else the new
// HTML of the region.
(function () {
  "use strict";
  var state = document.getElementById("live-state");
  window.nightfoldLoadedAt = window.nightfoldLoadedAt || Date.now();
  function say(text) {
    if (!state) return;
    state.hidden = false;
    state.textContent = text;
  }
  function watch(el) {
    var every = parseInt(el.getAttribute("data-every"), 10) || 2000;
    var url = el.getAttribute("data-live");
    function schedule() { window.setTimeout(tick, every); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      var sep = url.indexOf("?") < 0 ? "?" : "&";
      var version = el.getAttribute("data-version") || "";
      fetch(url + sep + "v=" + encodeURIComponent(version), {
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" }
      }).then(function (r) {
        if (r.status === 200) {
          var v = r.headers.get("X-Version");
          return r.text().then(function (html) {
            el.innerHTML = html;
            if (v) el.setAttribute("data-version", v);
            el.dispatchEvent(new CustomEvent("nightfold:updated", { bubbles: true }));
          });
        }
        if (r.status !== 204) throw new Error("HTTP " + r.status);
      }).then(function () {
        say("live · " + new Date().toLocaleTimeString());
      }, function () {
        say("offline · retrying");
      }).then(schedule, schedule);
    }
    schedule();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) watch(regions[i]);
    if (regions.length) say("live");
  });
})();
