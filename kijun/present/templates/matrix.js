(function () {
  "use strict";
  var root = document.documentElement;
  var data = JSON.parse(document.getElementById("kijun-data").textContent);
  // Cross-check the rendered figures against the embedded data (the JSON format of `kijun matrix`).
  var ok = true;
  var cells = document.querySelectorAll("#heatmap td.cell");
  if (cells.length !== data.hosts.length * data.controls.length) ok = false;
  data.statuses.forEach(function (s) {
    var shown = document.querySelector('[data-count-status="' + s + '"]');
    var counted = 0;
    for (var i = 0; i < cells.length; i++) if (cells[i].getAttribute("data-status") === s) counted++;
    if (!shown || Number(shown.textContent) !== data.totals.by_status[s] || counted !== data.totals.by_status[s]) ok = false;
  });
  var labels = document.querySelectorAll("#trend .trend-label");
  if (labels.length !== data.trend.length) ok = false;
  root.setAttribute("data-kijun-consistent", ok ? "1" : "0");
  if (!ok) {
    var warn = document.getElementById("consistency");
    warn.hidden = false;
  }
  // Hover: outline the row's host and the column's control.
  var heat = document.getElementById("heatmap");
  heat.addEventListener("mouseover", function (ev) {
    var td = ev.target.closest && ev.target.closest("td.cell");
    heat.querySelectorAll(".hl").forEach(function (el) { el.classList.remove("hl"); });
    if (!td) return;
    var col = td.getAttribute("data-col");
    var head = heat.querySelector('th.ctl[data-col="' + col + '"]');
    if (head) head.classList.add("hl");
    td.parentNode.querySelector("th.hn").classList.add("hl");
  });
  // Legend: show only the chosen statuses.
  var chosen = {};
  document.querySelectorAll(".legend button").forEach(function (b) {
    b.addEventListener("click", function () {
      var s = b.getAttribute("data-status");
      chosen[s] = !chosen[s];
      b.setAttribute("aria-pressed", chosen[s] ? "true" : "false");
      var any = Object.keys(chosen).some(function (k) { return chosen[k]; });
      heat.classList.toggle("dim", any);
      cells.forEach(function (c) { c.classList.toggle("on", !!chosen[c.getAttribute("data-status")]); });
    });
  });
  root.setAttribute("data-kijun-ready", "1");
})();
