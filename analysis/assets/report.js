/* parity-ray report: interactive charts, instance explorer, run vs run. No network, no server.
 *
 * Run data live beside the page in data/run-<i>.js and are loaded on demand with a <script> tag
 * (fetch() of file:// URLs is refused by browsers); each calls PR.register(i, data).
 * Thumbnails are cells of shared PNG sheets (images/<set>/s<n>.png), drawn onto canvases.
 * For tests and devtools, <body> carries data-charts, data-sheets-loaded / -failed,
 * data-thumbs-drawn, data-explorer-count and data-compare-count.
 */
(function () {
  "use strict";
  var PR = (window.PR = window.PR || {});
  var manifest = JSON.parse(document.getElementById("pr-manifest").textContent);
  var charts = JSON.parse(document.getElementById("pr-charts").textContent);
  var body = document.body;
  var PAGE = 60; // cards added per "show more"
  var OUTCOME_TEXT = { lost_by_decoding: "lost by decoding", fixed_by_decoding: "fixed by decoding",
    different_mistake: "different mistake", both_right: "right in both", only_a: "right only in A",
    only_b: "right only in B", both_wrong: "wrong in both" };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "cls") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function pct(v) { return v == null ? "—" : (v * 100).toFixed(1) + " %"; }
  function num(v) { return v.toLocaleString("en-US"); }
  function fmtKL(v) { return v == null ? "—" : (v >= 100 ? v.toFixed(0) : v.toPrecision(3)); }
  function option(select, value, text) { select.appendChild(el("option", { value: value, text: text })); }

  // ------------------------------------------------------------------ run data, loaded on demand
  var runs = {}, waiting = {};
  PR.register = function (i, data) {
    runs[i] = data;
    (waiting[i] || []).forEach(function (cb) { cb.ok(data); });
    delete waiting[i];
  };
  function loadRun(i) {
    return new Promise(function (ok, fail) {
      if (runs[i]) return ok(runs[i]);
      if (waiting[i]) return waiting[i].push({ ok: ok, fail: fail });
      waiting[i] = [{ ok: ok, fail: fail }];
      var script = el("script", { src: manifest.runs[i].file });
      script.onerror = function () {
        (waiting[i] || []).forEach(function (cb) { cb.fail(new Error("cannot read " + manifest.runs[i].file)); });
        delete waiting[i];
      };
      document.head.appendChild(script);
    });
  }

  // ------------------------------------------------------------------ thumbnails
  var sheets = {}, sheetStats = { loaded: 0, failed: 0 }, drawn = 0;
  function sheet(url) {
    if (!sheets[url]) {
      sheets[url] = new Promise(function (ok) {
        var img = new Image();
        img.onload = function () { sheetStats.loaded += 1; mark(); ok(img); };
        img.onerror = function () { sheetStats.failed += 1; mark(); ok(null); };
        img.src = url;
      });
    }
    return sheets[url];
  }
  function mark() {
    body.dataset.sheetsLoaded = sheetStats.loaded;
    body.dataset.sheetsFailed = sheetStats.failed;
    body.dataset.thumbsDrawn = drawn;
  }
  // A canvas showing cell `index` of a sheet set, its larger side `size` CSS pixels.
  function thumb(set, index, size) {
    var per = set.sheet * set.sheet, cell = index % per, row = Math.floor(cell / set.sheet), col = cell % set.sheet;
    var scale = size / Math.max(set.h, set.w);
    var canvas = el("canvas", { width: Math.round(set.w * scale), height: Math.round(set.h * scale) });
    sheet(set.path + "s" + Math.floor(index / per) + ".png").then(function (img) {
      if (!img) return;
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = scale < 1;
      ctx.drawImage(img, col * set.w, row * set.h, set.w, set.h, 0, 0, canvas.width, canvas.height);
      canvas.dataset.drawn = "1";
      drawn += 1;
      mark();
    });
    return canvas;
  }
  function hasThumb(dataset, index) {
    var set = manifest.datasets[dataset];
    if (!set) return false;
    if (!set.bytes) set.bytes = Uint8Array.from(atob(set.bits), function (c) { return c.charCodeAt(0); });
    var byte = set.bytes[index >> 3];
    return byte !== undefined && (byte >> (index & 7)) & 1;
  }
  function tile(set, index, size, caption, cls) {
    var fig = el("figure", { cls: "tile " + (cls || "") });
    fig.appendChild(set ? thumb(set, index, size) : el("div", { cls: "noimg", text: "no image" }));
    fig.appendChild(el("figcaption", { text: caption }));
    return fig;
  }

  // ------------------------------------------------------------------ charts (Plotly, shipped beside the page)
  function drawCharts() {
    if (!window.Plotly) {
      charts.forEach(function (c) { var d = $(c.id); if (d) d.textContent = "plotly.min.js did not load: see the static PNG below."; });
      return;
    }
    var done = 0;
    charts.forEach(function (c) {
      var div = $(c.id);
      if (!div) return;
      div.textContent = "";
      // No mode bar (it would sit on the legend); drag to zoom, double-click to reset, click a legend entry to toggle.
      window.Plotly.newPlot(div, c.data, c.layout, { responsive: true, displayModeBar: false });
      div.dataset.rendered = "1";
      done += 1;
    });
    body.dataset.charts = done;
    body.dataset.chartsMs = Math.round(performance.now());
  }

  // ------------------------------------------------------------------ score bars
  function scoreList(title, classes, probs, label) {
    var box = el("div", {}, [el("h5", { text: title })]);
    for (var n = 0; n < classes.length; n++) {
      if (classes[n] < 0) continue;
      var fill = el("div", { cls: "fill" });
      fill.style.width = Math.max(1, Math.round(probs[n] * 100)) + "%";
      box.appendChild(el("div", { cls: "bar" + (classes[n] === label ? " truth" : ""), title: "class " + classes[n] },
        [el("span", { text: String(classes[n]) }), el("div", {}, [fill]), el("span", { text: pct(probs[n]) })]));
    }
    return box;
  }

  // ------------------------------------------------------------------ instance explorer
  var ex = { run: null, data: null, order: [], shown: 0 };
  var exControls = ["ex-outcome", "ex-class", "ex-position", "ex-pattern", "ex-kl-min", "ex-kl-max", "ex-test-index", "ex-sort"];

  function fillSelect(id, values, text) {
    var select = $(id), keep = select.value;
    while (select.options.length > 1) select.remove(1);
    values.forEach(function (v) { option(select, String(v), text ? text(v) : String(v)); });
    select.value = values.map(String).indexOf(keep) >= 0 ? keep : "";
  }
  function uniqueSorted(values) {
    return Array.from(new Set(values)).sort(function (a, b) { return a - b; });
  }

  function selectExplorerRun(i, options) {
    options = options || {};
    $("ex-run").value = String(i);
    $("ex-status").textContent = "Loading " + manifest.runs[i].file + " …";
    return loadRun(i).then(function (data) {
      ex.run = i; ex.data = data;
      var rows = data.rows;
      fillSelect("ex-class", uniqueSorted(rows.label));
      fillSelect("ex-position", uniqueSorted(rows.position), function (p) { return "slot " + p; });
      var patterns = uniqueSorted(rows.pattern);
      fillSelect("ex-pattern", patterns, function (p) {
        var text = data.patterns[p];
        return "{" + text + "} unavailable (e=" + text.split(",").length + ")";
      });
      if (options.testIndex != null) $("ex-test-index").value = options.testIndex;
      var note = $("ex-images-note"), images = data.images;
      note.hidden = images.status === "ok" && !images.capped;
      if (images.status === "unavailable") note.textContent = "Images are not shown for this run: " + images.reason +
        ". The decodes are listed without them (run parity-ray report with --data-root to add them).";
      else if (images.status === "off") note.textContent = "Images are not shown: " + images.reason + ".";
      else if (images.status === "ok" && images.capped) note.textContent = "Images are shown for the " + images.shown +
        " decoded instances with the largest KL (--max-thumbnails); the others are listed without them.";
      else if (images.status === "none") note.hidden = true;
      applyExplorer();
    }, function (err) {
      $("ex-status").textContent = "This run's data could not be loaded (" + err.message + ").";
    });
  }

  function applyExplorer() {
    var d = ex.data;
    if (!d) return;
    var rows = d.rows, n = rows.group.length;
    var outcome = $("ex-outcome").value, cls = $("ex-class").value, pos = $("ex-position").value;
    var pattern = $("ex-pattern").value, klMin = parseFloat($("ex-kl-min").value), klMax = parseFloat($("ex-kl-max").value);
    var ti = $("ex-test-index").value;
    var outcomeIndex = outcome === "" ? -1 : manifest.outcomes.indexOf(outcome);
    var order = [];
    for (var j = 0; j < n; j++) {
      if (outcomeIndex >= 0 && rows.outcome[j] !== outcomeIndex) continue;
      if (cls !== "" && rows.label[j] !== +cls) continue;
      if (pos !== "" && rows.position[j] !== +pos) continue;
      if (pattern !== "" && rows.pattern[j] !== +pattern) continue;
      if (!isNaN(klMin) && !(rows.kl[j] >= klMin)) continue;
      if (!isNaN(klMax) && !(rows.kl[j] <= klMax)) continue;
      if (ti !== "" && rows.test_index[j] !== +ti) continue;
      order.push(j);
    }
    var sort = $("ex-sort").value, key = {
      "kl-desc": function (j) { return -rows.kl[j]; }, "kl-asc": function (j) { return rows.kl[j]; },
      "dec-desc": function (j) { return -rows.decoded_p[j]; }, "base-desc": function (j) { return -rows.base_p[j]; },
      "label": function (j) { return rows.label[j]; }, "test": function (j) { return rows.test_index[j]; }
    }[sort];
    order.sort(function (a, b) { return key(a) - key(b) || a - b; });
    ex.order = order; ex.shown = 0;
    $("ex-list").textContent = "";
    body.dataset.explorerCount = order.length;
    if (!body.dataset.explorerMs) body.dataset.explorerMs = Math.round(performance.now());
    showMoreExplorer();
  }

  function explorerStatus() {
    var d = ex.data, total = d.rows.group.length, count = ex.order.length, text;
    if (count === total) {
      text = num(total) + " decode" + (total === 1 ? " differs" : "s differ") + " from the base model's answer (of " +
        num(d.decodes) + " decodes of " + num(d.instances_total) + " test images).";
    } else {
      text = num(count) + " of the " + num(total) + " differing decodes match the filters.";
    }
    if (count) text += ex.shown >= count ? " Showing all." : " Showing the first " + num(ex.shown) + ".";
    $("ex-status").textContent = text;
    $("ex-count").textContent = String(count);
    $("ex-more").hidden = ex.shown >= count;
  }
  function order_text(shown, count) {
    return count === 0 ? "No" : shown >= count ? "Showing all " + num(count) : "Showing " + num(shown) + " of " + num(count);
  }

  function showMoreExplorer() {
    var list = $("ex-list"), end = Math.min(ex.order.length, ex.shown + PAGE);
    for (var n = ex.shown; n < end; n++) list.appendChild(explorerCard(ex.order[n]));
    ex.shown = end;
    explorerStatus();
  }

  function explorerCard(j) {
    var d = ex.data, rows = d.rows, images = d.images, info = manifest.runs[ex.run];
    var outcome = manifest.outcomes[rows.outcome[j]], pattern = d.patterns[rows.pattern[j]];
    var down = pattern.split(",").map(Number), members = d.groups[rows.group[j]] || [];
    var withImages = images.status === "ok" && rows.thumb[j] === 1;
    var dataSet = withImages ? manifest.datasets[images.data] : null;
    var codedSet = withImages ? manifest.coded[images.coded] : null;
    var head = el("h4", {}, [
      el("span", { text: "test image #" + rows.test_index[j] + " · class " + rows.label[j] }),
      el("span", { cls: "badge " + outcome, text: OUTCOME_TEXT[outcome] }),
      el("span", { cls: "sub", text: "KL " + fmtKL(rows.kl[j]) + " nats" }),
      el("span", { cls: "sub", text: "group " + rows.group[j] + ", slot " + rows.position[j] + " rebuilt; worker" +
        (down.length > 1 ? "s {" : " {") + pattern + "} unavailable" + (rows.parity ? "; parity " + rows.parity[j] : "") })
    ]);
    var group = el("div", { cls: "tiles" });
    members.forEach(function (index, slot) {
      var cls = slot === rows.position[j] ? "target" : "";
      if (d.systematic && down.indexOf(slot) >= 0 && slot !== rows.position[j]) cls = "down";
      if (d.systematic && down.indexOf(slot) >= 0 && slot === rows.position[j]) cls = "target down-target";
      group.appendChild(tile(dataSet, index, slot === rows.position[j] ? 72 : 56,
        (slot === rows.position[j] ? "rebuilt: " : "") + "#" + index, cls));
    });
    var strips = el("div", { cls: "strips" }, [
      el("div", { cls: "strip" }, [el("div", { cls: "label", text: "k-group (slot " + rows.position[j] + " rebuilt)" }), group])
    ]);
    if (withImages) {
      var coded = el("div", { cls: "tiles" }), slot = images.coded_slots[rows.group[j]];
      images.workers.forEach(function (worker, w) {
        coded.appendChild(tile(codedSet, slot * codedSet.workers + w, 56, "worker " + worker,
          down.indexOf(worker) >= 0 ? "down" : ""));
      });
      strips.appendChild(el("div", { cls: "strip" }, [el("div", { cls: "label",
        text: d.systematic ? "coded queries (parity workers)" : "coded queries (every worker)" }), coded]));
    }
    var base = rows.base_top5 ? rows.base_top5.slice(5 * j, 5 * j + 5) : [rows.base[j]];
    var baseP = rows.base_top5_p ? rows.base_top5_p.slice(5 * j, 5 * j + 5) : [rows.base_p[j]];
    var dec = rows.decoded_top5 ? rows.decoded_top5.slice(5 * j, 5 * j + 5) : [rows.decoded[j]];
    var decP = rows.decoded_top5_p ? rows.decoded_top5_p.slice(5 * j, 5 * j + 5) : [rows.decoded_p[j]];
    var five = rows.base_top5 ? "top-5" : "top-1";
    var scores = el("div", { cls: "scores" }, [
      scoreList("base model " + five, base, baseP, rows.label[j]),
      scoreList("decoded " + five, dec, decP, rows.label[j])
    ]);
    var card = el("div", { cls: "card", "data-row": j, "data-run": info.run_id }, [head, strips, scores]);
    if (!rows.base_top5) card.appendChild(el("div", { cls: "sub", text: "top-5 scores are recorded from schema version 2 on" }));
    return card;
  }

  // ------------------------------------------------------------------ run vs run
  var cmp = { order: [], shown: 0, a: null, b: null, joined: null };

  function comparable(a) {
    return manifest.runs.filter(function (r) { return r.dataset === manifest.runs[a].dataset; });
  }
  function fillRuns(select, list) {
    select.textContent = "";
    list.forEach(function (r) { option(select, String(r.i), r.label + " — " + r.run_id); });
  }

  function selectPair(a, b) {
    $("cmp-a").value = String(a);
    fillRuns($("cmp-b"), comparable(a));
    if (b == null || manifest.runs[b].dataset !== manifest.runs[a].dataset) {
      var others = comparable(a).filter(function (r) { return r.i !== a; });
      b = others.length ? others[0].i : a;
    }
    $("cmp-b").value = String(b);
    var es = manifest.runs[a].erasures.filter(function (e) { return manifest.runs[b].erasures.indexOf(e) >= 0; });
    var eSelect = $("cmp-e"), keep = eSelect.value;
    eSelect.textContent = "";
    es.forEach(function (e) { option(eSelect, String(e), String(e)); });
    eSelect.value = es.map(String).indexOf(keep) >= 0 ? keep : String(es[0]);
    $("cmp-status").textContent = "Loading …";
    return Promise.all([loadRun(a), loadRun(b)]).then(function (both) {
      cmp.a = a; cmp.b = b;
      joinRuns(both[0], both[1], eSelect.value);
    }, function (err) { $("cmp-status").textContent = "Run data could not be loaded (" + err.message + ")."; });
  }

  function joinRuns(A, B, e) {
    var sa = A.summaries[e], sb = B.summaries[e];
    if (!sa || !sb) { $("cmp-status").textContent = "No decodes with " + e + " unavailable worker(s) in both runs."; return; }
    var at = {}, n;
    for (n = 0; n < sa.test_index.length; n++) at[sa.test_index[n]] = n;
    var joined = [], counts = { both_right: 0, only_a: 0, only_b: 0, both_wrong: 0 };
    for (n = 0; n < sb.test_index.length; n++) {
      var m = at[sb.test_index[n]];
      if (m === undefined) continue;
      var ra = sa.correct[m] > 500, rb = sb.correct[n] > 500;
      var outcome = ra && rb ? "both_right" : ra ? "only_a" : rb ? "only_b" : "both_wrong";
      counts[outcome] += 1;
      joined.push({ ti: sa.test_index[m], label: sa.label[m], outcome: outcome, ca: sa.correct[m], cb: sb.correct[n],
        pa: sa.prediction[m], pb: sb.prediction[n], base: sa.base[m], baseB: sb.base[n], da: sa.decodes[m], db: sb.decodes[n] });
    }
    cmp.joined = joined;
    var total = joined.length || 1;
    function cell(key) { return el("td", { text: num(counts[key]) + " (" + pct(counts[key] / total) + ")", "data-outcome": key }); }
    var table = el("table", { cls: "confusion", id: "comparison-table" }, [
      el("thead", {}, [el("tr", {}, [el("th", { text: "" }), el("th", { text: "B right" }), el("th", { text: "B wrong" })])]),
      el("tbody", {}, [
        el("tr", {}, [el("th", { text: "A right" }), cell("both_right"), cell("only_a")]),
        el("tr", {}, [el("th", { text: "A wrong" }), cell("only_b"), cell("both_wrong")])
      ])
    ]);
    var legend = el("p", { cls: "sub", text: "A = " + manifest.runs[cmp.a].label + " (" + manifest.runs[cmp.a].run_id +
      "), B = " + manifest.runs[cmp.b].label + " (" + manifest.runs[cmp.b].run_id + "); " + num(joined.length) +
      " test images decoded by both with " + e + " unavailable worker(s)." });
    $("cmp-table").textContent = "";
    $("cmp-table").appendChild(table);
    $("cmp-table").appendChild(legend);
    fillSelect("cmp-class", uniqueSorted(joined.map(function (r) { return r.label; })));
    applyCompare();
  }

  function applyCompare() {
    if (!cmp.joined) return;
    var side = $("cmp-side").value, cls = $("cmp-class").value, sort = $("cmp-sort").value;
    var order = cmp.joined.filter(function (r) {
      if (side === "flips" ? r.outcome !== "only_a" && r.outcome !== "only_b" : r.outcome !== side) return false;
      return cls === "" || r.label === +cls;
    });
    var key = { gap: function (r) { return -Math.abs(r.ca - r.cb); }, test: function (r) { return r.ti; },
      label: function (r) { return r.label; } }[sort];
    order.sort(function (x, y) { return key(x) - key(y) || x.ti - y.ti; });
    cmp.order = order; cmp.shown = 0;
    $("cmp-list").textContent = "";
    body.dataset.compareCount = order.length;
    showMoreCompare();
  }

  function showMoreCompare() {
    var list = $("cmp-list"), end = Math.min(cmp.order.length, cmp.shown + PAGE);
    for (var n = cmp.shown; n < end; n++) list.appendChild(compareCard(cmp.order[n]));
    cmp.shown = end;
    $("cmp-status").textContent = order_text(cmp.shown, cmp.order.length) + " test images" +
      (cmp.order.length ? "." : " of this kind.");
    $("cmp-count").textContent = String(cmp.order.length);
    $("cmp-more").hidden = cmp.shown >= cmp.order.length;
  }

  function compareCard(r) {
    var dataset = manifest.runs[cmp.a].dataset, set = hasThumb(dataset, r.ti) ? manifest.datasets[dataset] : null;
    function line(name, run, prediction, correct, decodes, base) {
      var right = prediction === r.label;
      var parts = [el("b", { text: name + " " }), el("span", { cls: right ? "ok" : "bad", text: prediction + (right ? " ✓" : " ✗") }),
        el("span", { title: "decodes of this image that give the true label",
          text: " · " + Math.round(correct * decodes / 1000) + "/" + decodes + " right" })];
      if (prediction !== base) {  // the run's explorer lists this image's decodes that differ from the base model
        parts.push(document.createTextNode(" · "));
        parts.push(el("a", { href: "#explore=" + run + "&ti=" + r.ti, text: "explore" }));
      }
      return el("div", {}, parts);
    }
    var base = el("div", {}, [el("b", { text: "base " }), el("span", { cls: r.base === r.label ? "ok" : "bad",
      text: r.base + (r.base === r.label ? " ✓" : " ✗") }),
      document.createTextNode(r.baseB !== r.base ? " (B's base model: " + r.baseB + ")" : "")]);
    return el("div", { cls: "card", "data-test-index": r.ti }, [
      el("h4", {}, [el("span", { text: "#" + r.ti + " · class " + r.label }),
        el("span", { cls: "badge " + r.outcome, text: OUTCOME_TEXT[r.outcome] })]),
      el("div", { cls: "flip" }, [tile(set, r.ti, 56, "", ""),
        el("div", { cls: "lines" }, [line("A", cmp.a, r.pa, r.ca, r.da, r.base), line("B", cmp.b, r.pb, r.cb, r.db, r.baseB), base])])
    ]);
  }

  // ------------------------------------------------------------------ wiring
  function route() {
    var match = /^#explore=(\d+)(?:&ti=(\d+))?$/.exec(location.hash);
    if (!match || !manifest.runs[+match[1]]) return false;
    clearFilters(); // a link opens the run whole (or one test image of it), whatever was filtered before
    selectExplorerRun(+match[1], { testIndex: match[2] == null ? "" : match[2] });
    $("explorer").scrollIntoView();
    return true;
  }

  function clearFilters() {
    exControls.forEach(function (id) { if (id !== "ex-sort") $(id).value = ""; });
  }

  function init() {
    mark();
    var runSelect = $("ex-run");
    if (!manifest.runs.length) {
      $("ex-status").textContent = "No completed run with test predictions: nothing to explore.";
      $("cmp-status").textContent = "No completed run to compare.";
      body.dataset.explorerCount = 0;
      return;
    }
    fillRuns(runSelect, manifest.runs);
    manifest.outcomes.forEach(function (o) { option($("ex-outcome"), o, OUTCOME_TEXT[o]); });
    runSelect.addEventListener("change", function () { selectExplorerRun(+runSelect.value); });
    exControls.forEach(function (id) {
      $(id).addEventListener($(id).tagName === "INPUT" ? "input" : "change", applyExplorer);
    });
    $("ex-reset").addEventListener("click", function () { clearFilters(); applyExplorer(); });
    $("ex-more").addEventListener("click", showMoreExplorer);
    fillRuns($("cmp-a"), manifest.runs);
    $("cmp-a").addEventListener("change", function () { selectPair(+$("cmp-a").value, +$("cmp-b").value); });
    $("cmp-b").addEventListener("change", function () { selectPair(+$("cmp-a").value, +$("cmp-b").value); });
    $("cmp-e").addEventListener("change", function () { joinRuns(runs[cmp.a], runs[cmp.b], $("cmp-e").value); });
    ["cmp-side", "cmp-class", "cmp-sort"].forEach(function (id) { $(id).addEventListener("change", applyCompare); });
    $("cmp-more").addEventListener("click", showMoreCompare);
    window.addEventListener("hashchange", route);
    if (!route()) selectExplorerRun(manifest.runs[0].i);
    var pair = manifest.pair || [manifest.runs[0].i, null];
    selectPair(pair[0], pair[1]);
  }

  init();
  // Plotly (4.8 MB) is parsed after the page is usable: the explorer and tables do not wait for it.
  function loadPlotly() {
    var plotly = el("script", { src: "plotly.min.js" });
    plotly.onload = drawCharts;
    plotly.onerror = drawCharts; // says in each chart box that the library did not load
    document.body.appendChild(plotly);
  }
  if (document.readyState === "complete") loadPlotly();
  else window.addEventListener("load", loadPlotly);
  PR.manifest = manifest;
  PR.select = selectExplorerRun;
  PR.compare = selectPair;
})();
