/* parity-ray report: interactive charts, instance explorer, run vs run. No network, no server.
 *
 * Run data live beside the page in data/run-<i>.js and are loaded on demand with a <script> tag
 * (fetch() of file:// URLs is refused by browsers); each calls PR.register(i, data).
 * Thumbnails are cells of shared PNG sheets (images/<set>/s<n>.png), drawn onto canvases.
 * For tests and devtools, <body> carries data-charts, data-sheets-loaded / -failed,
 * data-thumbs-drawn, data-explorer-count and data-compare-count.
 * Regression (localisation) runs have boxes instead of classes: [x, y, w, h] in the frame of the
 * dataset's test images (manifest.datasets[d].frame = [height, width]), drawn as SVG rectangles
 * over the thumbnails (an SVG whose viewBox is that frame, laid exactly over the canvas).
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
    only_b: "right only in B", both_wrong: "wrong in both", both_miss: "both miss" };
  var SVG = "http://www.w3.org/2000/svg";
  var BOX_TEXT = { "true": "true box", base: "base model's box", decoded: "decoded box" };
  var SORTS = {
    classification: [["kl-desc", "KL, largest first"], ["kl-asc", "KL, smallest first"],
      ["dec-desc", "decoded confidence, highest first"], ["base-desc", "base confidence, highest first"],
      ["label", "true class"], ["test", "test image"]],
    regression: [["db-asc", "decoded box farthest from the base box first"], ["dt-asc", "IoU decoded vs true, lowest first"],
      ["dt-desc", "IoU decoded vs true, highest first"], ["gain-asc", "IoU lost by decoding, most first"],
      ["gain-desc", "IoU gained by decoding, most first"], ["test", "test image"]]
  };
  function isBoxes(i) { return manifest.runs[i].task === "regression"; }
  function outcomesOf(task) { return task === "regression" ? manifest.box_outcomes : manifest.outcomes; }

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
  function fmtIoU(v) { return v == null ? "—" : v.toFixed(3); }
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

  // A thumbnail with boxes drawn over it: `boxes` is [{kind: "true" | "base" | "decoded", box: [x, y, w, h]}] in the
  // dataset's frame (the test images' pixels). The SVG has the canvas's size and that frame as its viewBox, so a
  // box lands on the pixels it names whatever the thumbnail's size; a dark halo under each line keeps it visible.
  function boxTile(set, index, size, caption, cls, boxes) {
    var fig = el("figure", { cls: "tile boxed " + (cls || ""), "data-test-index": index });
    if (!set) {
      fig.appendChild(el("div", { cls: "noimg", text: "no image" }));
      fig.appendChild(el("figcaption", { text: caption }));
      return fig;
    }
    var canvas = thumb(set, index, size), frame = set.frame || [set.h, set.w];
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "boxes");
    svg.setAttribute("width", canvas.width);
    svg.setAttribute("height", canvas.height);
    svg.setAttribute("viewBox", "0 0 " + frame[1] + " " + frame[0]);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    boxes.forEach(function (b) {
      var box = b.box;
      if (!box || box[0] == null || !(box[2] > 0) || !(box[3] > 0)) return; // an empty box has nothing to draw
      ["halo", b.kind].forEach(function (layer) {
        var rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", box[0]);
        rect.setAttribute("y", box[1]);
        rect.setAttribute("width", box[2]);
        rect.setAttribute("height", box[3]);
        rect.setAttribute("vector-effect", "non-scaling-stroke");
        rect.setAttribute("class", layer === "halo" ? "halo" : "box-" + b.kind);
        if (layer !== "halo") rect.setAttribute("data-box", b.kind);
        svg.appendChild(rect);
      });
    });
    var holder = el("div", { cls: "box-holder" }, [canvas]);
    holder.appendChild(svg);
    fig.appendChild(holder);
    fig.appendChild(el("figcaption", { text: caption }));
    return fig;
  }
  function boxLegend(kinds) {
    return el("div", { cls: "box-legend" }, kinds.map(function (k) {
      return el("span", { cls: "key key-" + k }, [el("i", {}), document.createTextNode(BOX_TEXT[k])]);
    }));
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
  var ex = { run: null, data: null, order: [], shown: 0, task: null };
  // Controls of the page (a page without regression runs has no IoU controls, one without class runs no class ones).
  var exControls = ["ex-outcome", "ex-class", "ex-position", "ex-pattern", "ex-kl-min", "ex-kl-max", "ex-iou-which",
    "ex-iou-min", "ex-iou-max", "ex-test-index", "ex-sort"].filter(function (id) { return $(id) !== null; });
  function value(id) { return $(id) ? $(id).value : ""; }

  function fillSelect(id, values, text) {
    var select = $(id);
    if (!select) return;
    var keep = select.value;
    while (select.options.length > 1) select.remove(1);
    values.forEach(function (v) { option(select, String(v), text ? text(v) : String(v)); });
    select.value = values.map(String).indexOf(keep) >= 0 ? keep : "";
  }
  function uniqueSorted(values) {
    return Array.from(new Set(values)).sort(function (a, b) { return a - b; });
  }

  // Show the controls of a run's task (classes or boxes): outcomes, filters and sort orders differ.
  function setTask(task) {
    if (ex.task === task) return;
    ex.task = task;
    Array.prototype.forEach.call(document.querySelectorAll("#ex-controls [data-task]"), function (label) {
      label.hidden = label.dataset.task !== task;
      if (label.hidden) Array.prototype.forEach.call(label.querySelectorAll("input"), function (i) { i.value = ""; });
    });
    var outcome = $("ex-outcome");
    while (outcome.options.length > 1) outcome.remove(1);
    outcomesOf(task).forEach(function (o) { option(outcome, o, OUTCOME_TEXT[o]); });
    outcome.value = "";
    var sort = $("ex-sort");
    sort.textContent = "";
    SORTS[task].forEach(function (pair) { option(sort, pair[0], pair[1]); });
    sort.value = SORTS[task][0][0];
  }

  function selectExplorerRun(i, options) {
    options = options || {};
    $("ex-run").value = String(i);
    $("ex-status").textContent = "Loading " + manifest.runs[i].file + " …";
    return loadRun(i).then(function (data) {
      ex.run = i; ex.data = data;
      setTask(data.task || "classification");
      var rows = data.rows;
      if (rows.label) fillSelect("ex-class", uniqueSorted(rows.label));
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
        (data.task === "regression" ? " decoded instances whose box is farthest from the base model's"
          : " decoded instances with the largest KL") + " (--max-thumbnails); the others are listed without them.";
      else if (images.status === "none") note.hidden = true;
      applyExplorer();
    }, function (err) {
      $("ex-status").textContent = "This run's data could not be loaded (" + err.message + ").";
    });
  }

  function applyExplorer() {
    var d = ex.data;
    if (!d) return;
    var rows = d.rows, n = rows.group.length, boxes = d.task === "regression";
    var outcome = value("ex-outcome"), cls = value("ex-class"), pos = value("ex-position");
    var pattern = value("ex-pattern"), klMin = parseFloat(value("ex-kl-min")), klMax = parseFloat(value("ex-kl-max"));
    var iou = boxes ? rows[value("ex-iou-which") || "iou_dt"] : null;
    var iouMin = parseFloat(value("ex-iou-min")), iouMax = parseFloat(value("ex-iou-max"));
    var ti = value("ex-test-index");
    var outcomeIndex = outcome === "" ? -1 : outcomesOf(d.task || "classification").indexOf(outcome);
    var order = [];
    for (var j = 0; j < n; j++) {
      if (outcomeIndex >= 0 && rows.outcome[j] !== outcomeIndex) continue;
      if (pos !== "" && rows.position[j] !== +pos) continue;
      if (pattern !== "" && rows.pattern[j] !== +pattern) continue;
      if (ti !== "" && rows.test_index[j] !== +ti) continue;
      if (boxes) {
        if (!isNaN(iouMin) && !(iou[j] >= iouMin)) continue;
        if (!isNaN(iouMax) && !(iou[j] <= iouMax)) continue;
      } else {
        if (cls !== "" && rows.label[j] !== +cls) continue;
        if (!isNaN(klMin) && !(rows.kl[j] >= klMin)) continue;
        if (!isNaN(klMax) && !(rows.kl[j] <= klMax)) continue;
      }
      order.push(j);
    }
    var sort = $("ex-sort").value, key = {
      "kl-desc": function (j) { return -rows.kl[j]; }, "kl-asc": function (j) { return rows.kl[j]; },
      "dec-desc": function (j) { return -rows.decoded_p[j]; }, "base-desc": function (j) { return -rows.base_p[j]; },
      "label": function (j) { return rows.label[j]; }, "test": function (j) { return rows.test_index[j]; },
      "db-asc": function (j) { return rows.iou_db[j]; }, "dt-asc": function (j) { return rows.iou_dt[j]; },
      "dt-desc": function (j) { return -rows.iou_dt[j]; },
      "gain-asc": function (j) { return rows.iou_dt[j] - rows.iou_bt[j]; },
      "gain-desc": function (j) { return rows.iou_bt[j] - rows.iou_dt[j]; }
    }[sort] || function (j) { return j; };
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
      text = num(total) + " decode" + (total === 1 ? " differs" : "s differ") + " from the base model's " +
        (d.task === "regression" ? "box in outcome or miss the true box" : "answer") + " (of " +
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
    for (var n = ex.shown; n < end; n++) list.appendChild(ex.data.task === "regression" ? boxCard(ex.order[n]) : explorerCard(ex.order[n]));
    ex.shown = end;
    explorerStatus();
  }

  function erasedText(d, rows, j, pattern, down) {
    return "group " + rows.group[j] + ", slot " + rows.position[j] + " rebuilt; worker" +
      (down.length > 1 ? "s {" : " {") + pattern + "} unavailable" + (rows.parity ? "; parity " + rows.parity[j] : "");
  }
  // The coded queries the encoder built from the group (what the parity workers saw), or null without images.
  function codedStrip(d, j, down) {
    var images = d.images, codedSet = manifest.coded[images.coded];
    var coded = el("div", { cls: "tiles" }), slot = images.coded_slots[d.rows.group[j]];
    images.workers.forEach(function (worker, w) {
      coded.appendChild(tile(codedSet, slot * codedSet.workers + w, 56, "worker " + worker,
        down.indexOf(worker) >= 0 ? "down" : ""));
    });
    return el("div", { cls: "strip" }, [el("div", { cls: "label",
      text: d.systematic ? "coded queries (parity workers)" : "coded queries (every worker)" }), coded]);
  }

  function explorerCard(j) {
    var d = ex.data, rows = d.rows, images = d.images, info = manifest.runs[ex.run];
    var outcome = manifest.outcomes[rows.outcome[j]], pattern = d.patterns[rows.pattern[j]];
    var down = pattern.split(",").map(Number), members = d.groups[rows.group[j]] || [];
    var withImages = images.status === "ok" && rows.thumb[j] === 1;
    var dataSet = withImages ? manifest.datasets[images.data] : null;
    var head = el("h4", {}, [
      el("span", { text: "test image #" + rows.test_index[j] + " · class " + rows.label[j] }),
      el("span", { cls: "badge " + outcome, text: OUTCOME_TEXT[outcome] }),
      el("span", { cls: "sub", text: "KL " + fmtKL(rows.kl[j]) + " nats" }),
      el("span", { cls: "sub", text: erasedText(d, rows, j, pattern, down) })
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
    if (withImages) strips.appendChild(codedStrip(d, j, down));
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

  // IoU of two boxes as a bar, with the 0.75 threshold marked; `hit` marks IoUs against the true box.
  function iouBar(title, v, hit) {
    var fill = el("div", { cls: "fill" }), ok = v != null && v >= 0.75;
    fill.style.width = Math.max(0, Math.min(100, Math.round((v || 0) * 100))) + "%";
    return el("div", { cls: "bar iou" + (ok ? " truth" : "") }, [el("span", { text: title }),
      el("div", { cls: "track", title: "IoU; the mark is the 0.75 threshold" }, [fill, el("i", { cls: "threshold" })]),
      el("span", { cls: hit ? (ok ? "ok" : "bad") : "", text: fmtIoU(v) + (hit ? (ok ? " ✓" : " ✗") : "") })]);
  }
  function boxText(b) { return "[" + b.map(function (v) { return v == null ? "—" : v.toFixed(1); }).join(", ") + "]"; }

  // A regression decode: the image with its true, base and decoded boxes, the k-group partners with their true and
  // base boxes, the coded queries, and the IoUs (decoded and base against the true box, decoded against base).
  function boxCard(j) {
    var d = ex.data, rows = d.rows, images = d.images, info = manifest.runs[ex.run];
    var outcome = manifest.box_outcomes[rows.outcome[j]], pattern = d.patterns[rows.pattern[j]];
    var down = pattern.split(",").map(Number), members = d.groups[rows.group[j]] || [];
    var withImages = images.status === "ok" && rows.thumb[j] === 1;
    var dataSet = withImages ? manifest.datasets[images.data] : null;
    function box(name) { return rows[name].slice(4 * j, 4 * j + 4); }
    var head = el("h4", {}, [
      el("span", { text: "test image #" + rows.test_index[j] }),
      el("span", { cls: "badge " + outcome, text: OUTCOME_TEXT[outcome] }),
      el("span", { cls: "sub", text: "IoU decoded vs base " + fmtIoU(rows.iou_db[j]) }),
      el("span", { cls: "sub", text: erasedText(d, rows, j, pattern, down) })
    ]);
    var group = el("div", { cls: "tiles" });
    members.forEach(function (index, slot) {
      var target = slot === rows.position[j], erased = d.systematic && down.indexOf(slot) >= 0;
      var cls = target ? "target" + (erased ? " down-target" : "") : erased ? "down" : "";
      var known = d.boxes && d.boxes[index], boxes = target
        // The dashed base box last: where decoding reproduced it, both lines stay visible.
        ? [{ kind: "true", box: box("true_box") }, { kind: "decoded", box: box("decoded_box") }, { kind: "base", box: box("base_box") }]
        : known ? [{ kind: "true", box: known.slice(0, 4) }, { kind: "base", box: known.slice(4, 8) }] : [];
      group.appendChild(boxTile(dataSet, index, target ? 128 : 80, (target ? "rebuilt: " : "") + "#" + index, cls, boxes));
    });
    var strips = el("div", { cls: "strips" }, [
      el("div", { cls: "strip" }, [el("div", { cls: "label", text: "k-group (slot " + rows.position[j] + " rebuilt)" }), group])
    ]);
    if (withImages) strips.appendChild(codedStrip(d, j, down));
    var frame = dataSet && dataSet.frame ? dataSet.frame[1] + " × " + dataSet.frame[0] : "test image";
    var ious = el("div", { cls: "ious" }, [
      el("h5", { text: "IoU (hit: ≥ 0.75)" }),
      iouBar("base vs true", rows.iou_bt[j], true),
      iouBar("decoded vs true", rows.iou_dt[j], true),
      iouBar("decoded vs base", rows.iou_db[j], false),
      el("div", { cls: "sub coords", text: "x, y, w, h in the " + frame + " frame: true " + boxText(box("true_box")) +
        ", base " + boxText(box("base_box")) + ", decoded " + boxText(box("decoded_box")) })
    ]);
    return el("div", { cls: "card boxes-card", "data-row": j, "data-run": info.run_id, "data-test-index": rows.test_index[j] },
      [head, boxLegend(["true", "base", "decoded"]), strips, ious]);
  }

  // ------------------------------------------------------------------ run vs run
  var cmp = { order: [], shown: 0, a: null, b: null, joined: null };

  function comparable(a) {
    var run = manifest.runs[a];
    return manifest.runs.filter(function (r) { return r.dataset === run.dataset && r.task === run.task; });
  }
  // Runs as options; in a report of several experiments, grouped under each experiment's name.
  function fillRuns(select, list) {
    select.textContent = "";
    var grouped = (manifest.experiments || []).length > 1, groups = {};
    list.forEach(function (r) {
      var into = select;
      if (grouped) {
        if (!groups[r.experiment]) select.appendChild(groups[r.experiment] = el("optgroup", { label: "experiment " + r.experiment }));
        into = groups[r.experiment];
      }
      option(into, String(r.i), r.label + " — " + r.run_id);
    });
  }

  function selectPair(a, b) {
    $("cmp-a").value = String(a);
    fillRuns($("cmp-b"), comparable(a));
    if (b == null || comparable(a).indexOf(manifest.runs[b]) < 0) {
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
    var sa = A.summaries[e], sb = B.summaries[e], boxes = A.task === "regression";
    if (!sa || !sb) { $("cmp-status").textContent = "No decodes with " + e + " unavailable worker(s) in both runs."; return; }
    var at = {}, n;
    for (n = 0; n < sa.test_index.length; n++) at[sa.test_index[n]] = n;
    var joined = [], counts = { both_right: 0, only_a: 0, only_b: 0, both_wrong: 0 };
    function at_(s, key, i) { return s[key] ? s[key][i] : null; }
    for (n = 0; n < sb.test_index.length; n++) {
      var m = at[sb.test_index[n]];
      if (m === undefined) continue;
      var ra = sa.correct[m] > 500, rb = sb.correct[n] > 500;
      var outcome = ra && rb ? "both_right" : ra ? "only_a" : rb ? "only_b" : "both_wrong";
      counts[outcome] += 1;
      joined.push({ ti: sa.test_index[m], label: at_(sa, "label", m), outcome: outcome, ca: sa.correct[m], cb: sb.correct[n],
        pa: at_(sa, "prediction", m), pb: at_(sb, "prediction", n), base: sa.base[m], baseB: sb.base[n], da: sa.decodes[m],
        db: sb.decodes[n], ia: at_(sa, "iou", m), ib: at_(sb, "iou", n), biou: at_(sa, "base_iou", m) });
    }
    cmp.joined = joined;
    var total = joined.length || 1;
    function cell(key) { return el("td", { text: num(counts[key]) + " (" + pct(counts[key] / total) + ")", "data-outcome": key }); }
    var right = boxes ? " hits" : " right", wrong = boxes ? " misses" : " wrong";
    var table = el("table", { cls: "confusion", id: "comparison-table" }, [
      el("thead", {}, [el("tr", {}, [el("th", { text: "" }), el("th", { text: "B" + right }), el("th", { text: "B" + wrong })])]),
      el("tbody", {}, [
        el("tr", {}, [el("th", { text: "A" + right }), cell("both_right"), cell("only_a")]),
        el("tr", {}, [el("th", { text: "A" + wrong }), cell("only_b"), cell("both_wrong")])
      ])
    ]);
    function who(i) {
      var r = manifest.runs[i];
      return r.label + " (" + (r.experiment && (manifest.experiments || []).length > 1 ? "experiment " + r.experiment + ", " : "") +
        r.run_id + ")";
    }
    var legend = el("p", { cls: "sub", id: "cmp-legend", text: "A = " + who(cmp.a) + ", B = " + who(cmp.b) + "; " +
      num(joined.length) + " test images decoded by both with " + e + " unavailable worker(s)" +
      (boxes ? "; an image is a hit when most of its decoded boxes have IoU ≥ 0.75 with the true box." : ".") });
    $("cmp-table").textContent = "";
    $("cmp-table").appendChild(table);
    $("cmp-table").appendChild(legend);
    $("cmp-class-label").hidden = boxes;
    Array.prototype.forEach.call($("cmp-sort").options, function (o) { if (o.value === "label") o.hidden = boxes; });
    if (boxes && $("cmp-sort").value === "label") $("cmp-sort").value = "gap";
    if (boxes) $("cmp-class").value = "";
    else fillSelect("cmp-class", uniqueSorted(joined.map(function (r) { return r.label; })));
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

  // The true and base boxes of a test image, from whichever of the two runs lists it (regression runs).
  function knownBoxes(ti) {
    var found = [runs[cmp.a], runs[cmp.b]].map(function (d) { return d && d.boxes && d.boxes[ti]; }).filter(Boolean)[0];
    return found ? [{ kind: "true", box: found.slice(0, 4) }, { kind: "base", box: found.slice(4, 8) }] : [];
  }

  function compareCard(r) {
    var dataset = manifest.runs[cmp.a].dataset, set = hasThumb(dataset, r.ti) ? manifest.datasets[dataset] : null;
    var boxes = manifest.runs[cmp.a].task === "regression";
    function explore(parts, run) {
      parts.push(document.createTextNode(" · "));
      parts.push(el("a", { href: "#explore=" + run + "&ti=" + r.ti, text: "explore" }));
    }
    function line(name, run, prediction, correct, decodes, base) {
      var right = prediction === r.label;
      var parts = [el("b", { text: name + " " }), el("span", { cls: right ? "ok" : "bad", text: prediction + (right ? " ✓" : " ✗") }),
        el("span", { title: "decodes of this image that give the true label",
          text: " · " + Math.round(correct * decodes / 1000) + "/" + decodes + " right" })];
      if (prediction !== base) explore(parts, run); // the run's explorer lists this image's decodes that differ from the base model
      return el("div", {}, parts);
    }
    function boxLine(name, run, correct, decodes, iou) {
      var hit = correct > 500;
      var parts = [el("b", { text: name + " " }), el("span", { cls: hit ? "ok" : "bad", text: hit ? "hit ✓" : "miss ✗" }),
        el("span", { title: "decoded boxes of this image with IoU ≥ 0.75 against the true box",
          text: " · " + Math.round(correct * decodes / 1000) + "/" + decodes + " hit · mean IoU " + fmtIoU(iou / 1000) })];
      if (correct < 1000) explore(parts, run); // a decode that misses is listed in the run's explorer
      return el("div", {}, parts);
    }
    var lines, title, picture;
    if (boxes) {
      lines = [boxLine("A", cmp.a, r.ca, r.da, r.ia), boxLine("B", cmp.b, r.cb, r.db, r.ib),
        el("div", {}, [el("b", { text: "base " }), el("span", { cls: r.base ? "ok" : "bad", text: r.base ? "hit ✓" : "miss ✗" }),
          document.createTextNode(" · IoU " + fmtIoU(r.biou / 1000) + (r.baseB !== r.base ? " (B's base model differs)" : ""))])];
      title = "#" + r.ti;
      picture = boxTile(set, r.ti, 80, "", "", knownBoxes(r.ti));
    } else {
      lines = [line("A", cmp.a, r.pa, r.ca, r.da, r.base), line("B", cmp.b, r.pb, r.cb, r.db, r.baseB),
        el("div", {}, [el("b", { text: "base " }), el("span", { cls: r.base === r.label ? "ok" : "bad",
          text: r.base + (r.base === r.label ? " ✓" : " ✗") }),
          document.createTextNode(r.baseB !== r.base ? " (B's base model: " + r.baseB + ")" : "")])];
      title = "#" + r.ti + " · class " + r.label;
      picture = tile(set, r.ti, 56, "", "");
    }
    return el("div", { cls: "card", "data-test-index": r.ti }, [
      el("h4", {}, [el("span", { text: title }),
        el("span", { cls: "badge " + r.outcome, text: OUTCOME_TEXT[r.outcome] })]),
      el("div", { cls: "flip" }, [picture, el("div", { cls: "lines" }, lines)])
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
    exControls.forEach(function (id) {
      if (id === "ex-iou-which") $(id).value = "iou_dt";
      else if (id !== "ex-sort") $(id).value = "";
    });
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
    setTask(manifest.runs[0].task || "classification");
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
