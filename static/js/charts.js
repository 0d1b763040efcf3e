/* Draws every <canvas data-chart-url="URL"> with Chart.js 4 from the chart JSON at URL: the product's
 * chart views (dashboard/charts.py, built on django-chartjs), fetched with the reviewer's session:
 * {type, labels, datasets, percent, markers: [{label, text}], yMin, yMax, beginAtZero, indexAxis}.
 * Each page shows the same numbers in a table, so a chart that cannot be fetched only says so.
 * Sets data-rendered="1" on a drawn canvas, data-chart-error on one that failed.
 * A canvas is named by data-chart="NAME", never an id: across an htmx swap, htmx copies the old
 * attributes of an element with the same id onto the new one, and the style Chart.js gave the old canvas
 * would be an inline style attribute, which the Content-Security-Policy refuses. */
(function () {
  "use strict";

  // Vertical dashed lines at x labels (deployments), so the trend shows what changed when. Deployments
  // on the same label share one line and one caption; a caption that would run into the one before it
  // goes on the next row down, so captions of nearby days never overlap.
  const markerPlugin = {
    id: "markers",
    afterDatasetsDraw(chart, _args, opts) {
      const markers = (opts && opts.items) || [];
      if (!markers.length) return;
      const { ctx, chartArea, scales } = chart;
      const byLabel = new Map();
      for (const m of markers) {
        const x = scales.x.getPixelForValue(m.label);
        if (x === undefined || isNaN(x)) continue;
        if (byLabel.has(m.label)) byLabel.get(m.label).texts.push(m.text);
        else byLabel.set(m.label, { x, texts: [m.text] });
      }
      ctx.save();
      ctx.strokeStyle = "#a76200";
      ctx.fillStyle = "#a76200";
      ctx.setLineDash([4, 4]);
      ctx.font = "11px system-ui, sans-serif";
      const rowEnds = [];  // per caption row, the x where its last caption ends
      for (const { x, texts } of [...byLabel.values()].sort((a, b) => a.x - b.x)) {
        ctx.beginPath();
        ctx.moveTo(x, chartArea.top);
        ctx.lineTo(x, chartArea.bottom);
        ctx.stroke();
        const text = texts.join(", ");
        const width = ctx.measureText(text).width;
        let row = rowEnds.findIndex((end) => x + 3 > end + 4);
        if (row === -1) { row = rowEnds.length; rowEnds.push(0); }
        rowEnds[row] = x + 3 + width;
        ctx.fillText(text, x + 3, chartArea.top + 10 + row * 13);
      }
      ctx.restore();
    },
  };

  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }

  function draw(canvas, spec) {
    const y = { beginAtZero: spec.beginAtZero !== false };
    if (spec.yMin !== undefined) y.min = spec.yMin;
    if (spec.yMax !== undefined) y.max = spec.yMax;
    if (spec.percent) y.ticks = { callback: pct };
    new Chart(canvas, {
      type: spec.type || "line",
      data: { labels: spec.labels, datasets: spec.datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        spanGaps: true,
        indexAxis: spec.indexAxis || "x",
        scales: spec.indexAxis === "y" ? { x: y } : { y: y },
        plugins: {
          markers: { items: spec.markers || [] },
          tooltip: spec.percent ? {
            callbacks: {
              label(item) {
                const v = item.raw;
                if (Array.isArray(v)) return item.dataset.label + ": " + pct(v[0]) + " – " + pct(v[1]);
                return item.dataset.label + ": " + pct(typeof v === "object" && v !== null ? v.y : v);
              },
            },
          } : {},
        },
      },
      plugins: [markerPlugin],
    });
    canvas.dataset.rendered = "1";
  }

  function fail(canvas, reason) {
    canvas.dataset.chartError = reason;
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "The chart could not be loaded (" + reason + "); its numbers are in the table.";
    (canvas.closest(".chart") || canvas).after(note);
  }

  function load(canvas) {
    if (canvas.dataset.chartState || typeof Chart === "undefined") return;
    canvas.dataset.chartState = "loading";
    fetch(canvas.dataset.chartUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then((spec) => {
        if (canvas.isConnected) draw(canvas, spec);  // htmx may have swapped it out meanwhile
      })
      .catch((error) => fail(canvas, error.message));
  }

  function loadAll(root) {
    (root || document).querySelectorAll("canvas[data-chart-url]").forEach(load);
  }

  document.addEventListener("DOMContentLoaded", () => loadAll(document));
  document.addEventListener("htmx:afterSettle", (e) => loadAll(e.target));
})();
