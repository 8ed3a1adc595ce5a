// The console's enhancements; every page works without them. Loaded with defer, after htmx.
(function () {
  "use strict";

  // Copy buttons: shown only where the clipboard can be written.
  function setUpCopy(root) {
    root.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var field = document.getElementById(button.dataset.copy);
        var status = button.parentElement.querySelector(".copied");
        navigator.clipboard.writeText(field.value || field.textContent).then(function () {
          if (status) status.textContent = "Copied.";
        }, function () {
          if (field.select) field.select();
          if (status) status.textContent = "Select and copy the URL.";
        });
      });
    });
  }

  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // The console's one format for times (2026-11-07, 2026-11-07 20:00), as the tables write them.
  function formatted(date, hourly) {
    var day = date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate());
    return hourly ? day + " " + two(date.getHours()) + ":" + two(date.getMinutes()) : day;
  }

  // The scan series with uPlot: people, unique visitors and (unless people only) bots per bucket.
  function setUpChart() {
    var element = document.getElementById("chart");
    if (!element || typeof uPlot === "undefined") return;
    var data = JSON.parse(element.dataset.series);
    var width = function () { return Math.max(280, element.parentElement.clientWidth); };
    var zone = element.dataset.tz || "UTC";
    var hourly = element.dataset.interval === "hour";
    // the buckets' times in the zone the page was asked for, not the browser's own
    var inZone = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); };
    var series = [
      { value: function (u, ts) { return ts == null ? "" : formatted(inZone(ts), hourly); } },
      { label: "People", stroke: colour("--people"), width: 2 },
      { label: "Unique", stroke: colour("--unique"), width: 2 }
    ];
    var columns = [data.start, data.people, data.unique];
    if (data.bots) {
      series.push({ label: "Bots", stroke: colour("--bots"), width: 2, dash: [6, 4] });
      columns.push(data.bots);
    }
    var chart = new uPlot({
      width: width(),
      tzDate: inZone,
      height: 260,
      series: series,
      axes: [
        {
          stroke: colour("--text"),
          grid: { stroke: colour("--line") },
          space: hourly ? 140 : 100,  // the pixels a label needs, so that none overlaps the next
          values: function (u, splits) {
            return splits.map(function (ts) { return formatted(inZone(ts), hourly); });
          }
        },
        { stroke: colour("--text"), grid: { stroke: colour("--line") } }
      ]
    }, columns, element);
    window.addEventListener("resize", function () { chart.setSize({ width: width(), height: 260 }); });
  }

  // The preview's refusals beside the option fields they name (the server's words), and none
  // beside the others: the page then says what the preview does, not what it did before.
  function markOptionErrors() {
    var holder = document.getElementById("option-errors");
    var form = document.querySelector("form.options");
    if (!holder || !form) return;
    var errors = JSON.parse(holder.dataset.errors || "{}");
    form.querySelectorAll("input[name], select[name]").forEach(function (input) {
      var field = input.closest(".field");
      if (!field) return;
      var message = errors[input.name];
      var error = document.getElementById("e-" + input.name);
      var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
        return id && id !== "e-" + input.name;
      });
      if (message) {
        if (!error) {
          error = document.createElement("p");
          error.className = "error";
          error.id = "e-" + input.name;
          field.appendChild(error);
        }
        error.textContent = message;
        described.push(error.id);
        input.setAttribute("aria-invalid", "true");
        field.classList.add("invalid");
      } else {
        if (error) error.remove();
        input.removeAttribute("aria-invalid");
        field.classList.remove("invalid");
      }
      if (described.length) input.setAttribute("aria-describedby", described.join(" "));
      else input.removeAttribute("aria-describedby");
    });
  }

  // After a refused form, focus goes to the summary of what to change (read out first).
  function focusErrorSummary() {
    var summary = document.querySelector("[data-error-summary]");
    if (summary) summary.focus();
  }

  // "Select all" beside the codes' checkboxes (a page works without it: tick them one by one).
  function setUpSelectAll() {
    var all = document.getElementById("pick-all");
    if (!all) return;
    var boxes = document.querySelectorAll("input[name='id'][form='selection'], #selection input[name='id']");
    all.hidden = false;
    all.closest("label").hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCopy(document);
    setUpChart();
    setUpSelectAll();
    focusErrorSummary();
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "preview") markOptionErrors();
  });
})();
