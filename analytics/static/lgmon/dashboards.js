/*
 * lgmon dashboards: draws every chart the page describes in its "dashboard-data" JSON
 * ({"charts": [...]}, built by analytics/dashboards.py and versioning/result_charts.py).
 *
 * Uses Chart.js 4.6.1 (MIT, see vendor/chart.LICENSE.md), shipped as the static file
 * vendor/chart.umd.js (its dist/chart.umd.js without the sourceMappingURL line): the pages
 * load nothing from the internet.
 *
 * Chart kinds:
 * - "time": line charts over a linear x axis of epoch milliseconds (no date adapter needed),
 *   labelled in UTC; "markers" are drawn as vertical lines by the small plugin below.
 * - "intervals": per category (a variant, a metric) a floating bar from the low to the high
 *   end of its 95% interval and a point for the estimate.
 * After drawing, each canvas gets data-drawn="<points of its first dataset>".
 */
(function () {
  "use strict";

  var COLORS = ["#2f6fbd", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c"];
  var MARKER_COLORS = { "version": "#6f42c1", "alert-firing": "#cf222e", "alert-resolved": "#1a7f37" };

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // A tick every round amount of time (UTC), at most about 8 ticks over the span.
  var MINUTE = 60 * 1000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  var TICK_STEPS = [MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR,
    3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

  function tickStep(spanMs) {
    for (var i = 0; i < TICK_STEPS.length; i++) {
      if (spanMs / TICK_STEPS[i] <= 8) { return TICK_STEPS[i]; }
    }
    return TICK_STEPS[TICK_STEPS.length - 1];
  }

  function timeLabel(ms, spanMs) {
    var d = new Date(ms);
    var hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (spanMs <= 2 * 24 * 3600 * 1000) { return hm; }
    return (d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + hm;
  }

  // Vertical lines at the given x values (version changes, alerts), with a short label.
  var markerPlugin = {
    id: "lgmonMarkers",
    afterDatasetsDraw: function (chart, args, options) {
      var markers = (options && options.markers) || [];
      var scale = chart.scales.x;
      var area = chart.chartArea;
      if (!markers.length || !scale || !area) { return; }
      var ctx = chart.ctx;
      ctx.save();
      markers.forEach(function (marker, index) {
        if (marker.x < scale.min || marker.x > scale.max) { return; }
        var x = scale.getPixelForValue(marker.x);
        ctx.strokeStyle = MARKER_COLORS[marker.kind] || "#555";
        ctx.fillStyle = ctx.strokeStyle;
        ctx.lineWidth = 1.5;
        ctx.setLineDash(marker.kind === "version" ? [] : [4, 3]);
        ctx.beginPath();
        ctx.moveTo(x, area.top);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
        if (options.labels !== false) {
          ctx.font = "10px sans-serif";
          // Staggered over three rows, so that labels of close markers overlap less.
          var y = area.top + 10 + (index % 3) * 11;
          ctx.fillText(marker.label.slice(0, 40), Math.min(x + 3, area.right - 60), y);
        }
      });
      ctx.restore();
    }
  };

  function timeChart(canvas, spec) {
    var xs = [];
    spec.datasets.forEach(function (ds) { ds.data.forEach(function (p) { xs.push(p[0]); }); });
    var min = xs.length ? Math.min.apply(null, xs) : undefined;
    var max = xs.length ? Math.max.apply(null, xs) : undefined;
    var span = xs.length ? max - min : 0;
    var datasets = spec.datasets.map(function (ds, i) {
      var color = COLORS[i % COLORS.length];
      return {
        label: ds.label,
        data: ds.data.map(function (p) { return { x: p[0], y: p[1] }; }),
        borderColor: color,
        backgroundColor: color,
        borderWidth: spec.small ? 1.2 : 1.6,
        pointRadius: spec.small || ds.data.length > 80 ? 0 : 2,
        spanGaps: false,
        tension: 0
      };
    });
    return new Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: { xAxisKey: "x", yAxisKey: "y" },
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            min: min,
            max: max,
            display: !spec.small,
            ticks: {
              stepSize: span ? tickStep(span) : undefined,
              maxTicksLimit: 10,
              callback: function (value) { return timeLabel(value, span); }
            }
          },
          y: {
            beginAtZero: true,
            display: true,
            ticks: { maxTicksLimit: spec.small ? 3 : 6, font: { size: spec.small ? 9 : 12 } },
            title: { display: !spec.small, text: spec.unit }
          }
        },
        plugins: {
          legend: { display: !spec.small && spec.datasets.length > 1 },
          tooltip: {
            callbacks: {
              title: function (items) {
                return items.length ? timeLabel(items[0].parsed.x, 0) + " UTC" : "";
              },
              label: function (item) {
                var y = item.parsed.y;
                return item.dataset.label + ": " + (y === null ? "–" : y.toLocaleString()) + " " + spec.unit;
              }
            }
          },
          lgmonMarkers: { markers: spec.markers || [], labels: !spec.small }
        }
      },
      plugins: [markerPlugin]
    });
  }

  function intervalChart(canvas, spec) {
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [
          {
            type: "bar",
            label: "95% interval",
            data: spec.intervals,
            backgroundColor: "rgba(47, 111, 189, 0.25)",
            borderColor: "#2f6fbd",
            borderWidth: 1,
            barPercentage: 0.4
          },
          {
            type: "line",
            label: "estimate",
            data: spec.estimates,
            showLine: false,
            pointRadius: 5,
            pointStyle: "rectRot",
            borderColor: "#d9480f",
            backgroundColor: "#d9480f"
          }
        ]
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: "x",
        scales: {
          y: { beginAtZero: spec.zero !== false, title: { display: true, text: spec.unit } }
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                var v = item.raw;
                if (Array.isArray(v)) { return "95% interval: " + v[0] + " – " + v[1] + " " + spec.unit; }
                return "estimate: " + (v === null ? "–" : v) + " " + spec.unit;
              }
            }
          }
        }
      }
    });
  }

  function draw() {
    var source = document.getElementById("dashboard-data");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    (data.charts || []).forEach(function (spec) {
      var canvas = document.getElementById(spec.canvas);
      if (!canvas) { return; }
      var chart = spec.kind === "intervals" ? intervalChart(canvas, spec) : timeChart(canvas, spec);
      canvas.setAttribute("data-drawn", String(chart.data.datasets.length ? chart.data.datasets[0].data.length : 0));
    });
    document.body.setAttribute("data-charts-drawn", "true");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
