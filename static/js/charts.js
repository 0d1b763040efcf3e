/* Renders every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json">
 * (written by Django's json_script, so no user text is ever parsed as HTML).
 * Spec: {type, labels, datasets, percent, markers: [{label, text}], yMin, yMax}. */
(function () {
  "use strict";

  // Vertical dashed lines at x labels (deployments), so the trend shows what changed when.
  const markerPlugin = {
    id: "markers",
    afterDatasetsDraw(chart, _args, opts) {
      const markers = (opts && opts.items) || [];
      if (!markers.length) return;
      const { ctx, chartArea, scales } = chart;
      ctx.save();
      ctx.strokeStyle = "#a76200";
      ctx.fillStyle = "#a76200";
      ctx.setLineDash([4, 4]);
      ctx.font = "11px system-ui, sans-serif";
      for (const m of markers) {
        const x = scales.x.getPixelForValue(m.label);
        if (x === undefined || isNaN(x)) continue;
        ctx.beginPath();
        ctx.moveTo(x, chartArea.top);
        ctx.lineTo(x, chartArea.bottom);
        ctx.stroke();
        ctx.fillText(m.text, x + 3, chartArea.top + 10);
      }
      ctx.restore();
    },
  };

  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }

  function render(canvas) {
    if (canvas.dataset.rendered || typeof Chart === "undefined") return;
    const source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    const spec = JSON.parse(source.textContent);
    canvas.dataset.rendered = "1";
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
  }

  function renderAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(render);
  }

  document.addEventListener("DOMContentLoaded", () => renderAll(document));
  document.addEventListener("htmx:afterSettle", (e) => renderAll(e.target));
})();
