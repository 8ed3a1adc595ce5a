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
        navigator.clipboard.writeText(field.value).then(function () {
          if (status) status.textContent = "Copied.";
        }, function () {
          field.select();
          if (status) status.textContent = "Select and copy the URL.";
        });
      });
    });
  }

  function colour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // The scan series with uPlot: people, unique visitors and bots per bucket.
  function setUpChart() {
    var element = document.getElementById("chart");
    if (!element || typeof uPlot === "undefined") return;
    var data = JSON.parse(element.dataset.series);
    var width = function () { return Math.max(280, element.parentElement.clientWidth); };
    var zone = element.dataset.tz || "UTC";
    var chart = new uPlot({
      width: width(),
      // the buckets' times in the zone the page was asked for, not the browser's own
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); },
      height: 260,
      series: [
        {},
        { label: "People", stroke: colour("--people"), width: 2 },
        { label: "Unique", stroke: colour("--unique"), width: 2 },
        { label: "Bots", stroke: colour("--bots"), width: 2, dash: [6, 4] }
      ],
      axes: [
        { stroke: colour("--text"), grid: { stroke: colour("--line") } },
        { stroke: colour("--text"), grid: { stroke: colour("--line") } }
      ]
    }, [data.start, data.people, data.unique, data.bots], element);
    window.addEventListener("resize", function () { chart.setSize({ width: width(), height: 260 }); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCopy(document);
    setUpChart();
  });
})();
