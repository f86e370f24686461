/* The charts of a report page (templates/portal/reports/report.html): a bar chart of the counts
   and a line chart over time, drawn with Chart.js from the page's json_script block. The same
   numbers are in the page's tables, which work without this script. */
(function () {
  "use strict";

  var COLOURS = {
    Targeted: "#475467", Excluded: "#98a2b3", Sent: "#444ce7", Failed: "#b42318", Delivered: "#067647",
    Opened: "#0e9384", Clicked: "#dc6803", Unsubscribed: "#c11574", "Not delivered": "#f04438", Bounced: "#7a271a"
  };

  function colour(label) { return COLOURS[label] || "#667085"; }

  function draw() {
    var source = document.getElementById("report-data");
    if (!source || typeof window.Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var Chart = window.Chart;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.animation = false;

    var counts = document.getElementById("counts-chart");
    if (counts) {
      new Chart(counts, {
        type: "bar",
        data: {
          labels: data.counts.labels,
          datasets: [{ label: "Messages", data: data.counts.values,
                       backgroundColor: data.counts.labels.map(colour), borderRadius: 4 }]
        },
        options: {
          indexAxis: "y", maintainAspectRatio: false,
          plugins: { legend: { display: false } },
          scales: { x: { beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
    }

    var time = document.getElementById("time-chart");
    if (time) {
      new Chart(time, {
        type: "line",
        data: {
          labels: data.over_time.labels,
          datasets: data.over_time.series.map(function (s) {
            return { label: s.label, data: s.values, borderColor: colour(s.label), backgroundColor: colour(s.label),
                     tension: 0, pointRadius: s.values.length > 60 ? 0 : 3 };
          })
        },
        options: {
          maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
          scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
        }
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
