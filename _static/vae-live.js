/* Live figures (vaelib/live): a chapter's own decoder, run in the page in plain JavaScript.

   Each div.vae-live carries its decoder's weights and its latent plane in a JSON script tag
   (class vae-live-data). The figure's markup, and so the class names this script looks for, comes from
   vaelib/live/page.html. When the page has loaded, every such figure is wired up: its static image is
   hidden and its controls are shown. In the built book that tag is empty and names, in data-src, a
   script of its own that holds the JSON (tools/lean_pages.py moves it there, so that a first visit does
   not download every figure's weights): it is loaded when the figure comes near the screen, and calls
   vaeLiveData(key, json), which fills the tag and wires the figure up. A script, not fetch(), so the
   figures work from file:// as well as over http, and with no kernel. Each figure element gets a small
   API, element.vaeLive, that the browser tests use: decode(code), code(), setCode(code), coords() and
   check(). */
(function () {
  "use strict";

  function bytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function f32(b64) { return new Float32Array(bytes(b64).buffer); }  // little-endian, as exported

  // The decoder: Linear, ReLU, ..., Linear, sigmoid. int8 layers become float32 once, here.
  function makeDecoder(spec) {
    const layers = spec.layers.map(function (l) {
      let w;
      if (l.dtype === "int8") {
        const q = new Int8Array(bytes(l.weight).buffer), scale = f32(l.scale);
        w = new Float32Array(q.length);
        for (let r = 0; r < l.rows; r++) {
          for (let c = 0, o = r * l.cols; c < l.cols; c++) w[o + c] = q[o + c] * scale[r];
        }
      } else {
        w = f32(l.weight);
      }
      return {rows: l.rows, cols: l.cols, w: w, b: f32(l.bias), y: new Float64Array(l.rows)};
    });
    // Pixel probabilities for one code, in a buffer that the next call overwrites.
    return function decode(z) {
      let x = z;
      for (let k = 0; k < layers.length; k++) {
        const l = layers[k], w = l.w, b = l.b, y = l.y, cols = l.cols, last = k === layers.length - 1;
        for (let r = 0; r < l.rows; r++) {
          let s = b[r];
          for (let c = 0, o = r * cols; c < cols; c++) s += w[o + c] * x[c];
          y[r] = last ? 1 / (1 + Math.exp(-s)) : (s > 0 ? s : 0);
        }
        x = y;
      }
      return x;
    };
  }

  function gaussian() {  // Box-Muller
    let u = 0;
    while (u === 0) u = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
  }

  function niceStep(span) {
    const raw = span / 5, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    return mag * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
  }

  function fmt(v) { return (Math.abs(v) < 0.005 ? 0 : v).toFixed(2).replace("-", "\u2212"); }

  // Grey levels, dark ink on white paper as in the book's other figures.
  function paint(ctx, image, probs) {
    const px = image.data;
    for (let i = 0; i < probs.length; i++) {
      const v = Math.round(255 * (1 - probs[i]));
      px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = v;
      px[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  function setup(root) {
    const data = root.querySelector("script.vae-live-data");
    if (root.vaeLive || !data) return;
    const p = JSON.parse(data.textContent);
    const $ = function (sel) { return root.querySelector(sel); };
    const d = p.latent_dim, H = p.image_shape[0], W = p.image_shape[1];
    const decode = makeDecoder(p.decoder);
    const basis = f32(p.basis), K = p.n_directions;
    const dir = function (i) { return basis.subarray(i * d, (i + 1) * d); };
    const points = f32(p.points), labels = bytes(p.point_labels);
    const plane = p.plane.slice(), cx = p.centre[0], cy = p.centre[1], half = p.half;
    const z = Float64Array.from(p.start);
    const pad = $(".vae-live-pad"), out = $(".vae-live-out"), readout = $(".vae-live-readout");
    const octx = out.getContext("2d"), image = octx.createImageData(W, H);
    const ctx = pad.getContext("2d");
    let scatter = null;  // the dots, axes and circle, drawn once per size, theme and plane

    const dot = function (a, b) { let s = 0; for (let i = 0; i < d; i++) s += a[i] * b[i]; return s; };
    function coords() { return [dot(z, dir(plane[0])), dot(z, dir(plane[1]))]; }
    // Move the code's part in the pad's plane to (a, b); its part off the plane stays.
    function moveTo(a, b) {
      a = Math.min(cx + half, Math.max(cx - half, a));
      b = Math.min(cy + half, Math.max(cy - half, b));
      const ab = coords(), u = dir(plane[0]), v = dir(plane[1]);
      for (let i = 0; i < d; i++) z[i] += (a - ab[0]) * u[i] + (b - ab[1]) * v[i];
      update();
    }
    function toPx(a, b) {
      const s = pad.width / (2 * half);
      return [(a - cx + half) * s, (cy + half - b) * s];
    }

    function drawScatter() {
      const c = document.createElement("canvas");
      c.width = pad.width; c.height = pad.height;
      const g = c.getContext("2d"), ink = getComputedStyle(pad).color;
      const dpr = pad.width / (pad.clientWidth || pad.width), n = pad.width;
      // grid lines and their values
      const step = niceStep(2 * half);
      g.strokeStyle = ink; g.fillStyle = ink; g.lineWidth = dpr;
      g.font = (10 * dpr) + "px sans-serif";
      for (const axis of [0, 1]) {
        const lo = (axis ? cy : cx) - half, hi = (axis ? cy : cx) + half;
        for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) {
          const q = axis ? toPx(cx, t)[1] : toPx(t, cy)[0];
          g.globalAlpha = Math.abs(t) < step / 1e3 ? 0.45 : 0.12;
          g.beginPath();
          if (axis) { g.moveTo(0, q); g.lineTo(n, q); } else { g.moveTo(q, 0); g.lineTo(q, n); }
          g.stroke();
          g.globalAlpha = 0.7;
          const label = String(Math.round(t * 100) / 100).replace("-", "\u2212");
          if (axis) g.fillText(label, 3 * dpr, q - 3 * dpr); else g.fillText(label, q + 3 * dpr, n - 4 * dpr);
        }
      }
      // the codes, one colour per class
      g.globalAlpha = 0.75;
      const r = 1.7 * dpr;
      for (let i = 0; i < labels.length; i++) {
        const xy = toPx(points[i * K + plane[0]], points[i * K + plane[1]]);
        g.fillStyle = p.colors[labels[i] % p.colors.length];
        g.beginPath(); g.arc(xy[0], xy[1], r, 0, 2 * Math.PI); g.fill();
      }
      if (p.circle) {
        const o = toPx(0, 0);
        g.globalAlpha = 0.9; g.strokeStyle = ink; g.lineWidth = 1.5 * dpr;
        g.setLineDash([6 * dpr, 4 * dpr]);
        g.beginPath(); g.arc(o[0], o[1], p.circle * n / (2 * half), 0, 2 * Math.PI); g.stroke();
      }
      return c;
    }

    function size() {
      const px = Math.max(1, Math.round((pad.clientWidth || 300) * (window.devicePixelRatio || 1)));
      if (pad.width !== px || pad.height !== px) { pad.width = px; pad.height = px; scatter = null; }
    }

    function drawPad() {
      size();
      if (!scatter) scatter = drawScatter();
      const style = getComputedStyle(pad), dpr = pad.width / (pad.clientWidth || pad.width);
      ctx.clearRect(0, 0, pad.width, pad.height);
      ctx.drawImage(scatter, 0, 0);
      const xy = toPx.apply(null, coords());
      ctx.lineWidth = 4 * dpr; ctx.strokeStyle = style.backgroundColor;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 7 * dpr, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 2 * dpr; ctx.strokeStyle = style.color;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 7 * dpr, 0, 2 * Math.PI); ctx.stroke();
      ctx.fillStyle = style.color;
      ctx.beginPath(); ctx.arc(xy[0], xy[1], 1.5 * dpr, 0, 2 * Math.PI); ctx.fill();
    }

    function describe() {
      if (d === 2) return "z = (" + fmt(z[0]) + ", " + fmt(z[1]) + ")";
      const norm = Math.sqrt(dot(z, z)), lo = p.norm_range[0], hi = p.norm_range[1];
      const where = norm < lo ? "shorter than 97.5% of prior draws" :
        norm > hi ? "longer than 97.5% of prior draws" : "as long as a typical prior draw";
      return "\u2016z\u2016 = " + fmt(norm) + ": " + where + " (95% of them lie between " +
        lo.toFixed(1) + " and " + hi.toFixed(1) + "). In the plane: (" + coords().map(fmt).join(", ") + ").";
    }

    function update() {
      paint(octx, image, decode(z));
      drawPad();
      readout.textContent = describe();
    }

    // pointer: a click or a drag moves the code
    let dragging = null;
    function pointAt(e) {
      const r = pad.getBoundingClientRect();
      moveTo(cx - half + 2 * half * (e.clientX - r.left) / r.width, cy + half - 2 * half * (e.clientY - r.top) / r.height);
    }
    pad.addEventListener("pointerdown", function (e) {
      if (e.button !== 0) return;
      dragging = e.pointerId;
      try { pad.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic event has no capture */ }
      pad.focus({preventScroll: true});
      e.preventDefault();
      pointAt(e);
    });
    pad.addEventListener("pointermove", function (e) { if (dragging === e.pointerId) pointAt(e); });
    const stop = function (e) { if (dragging === e.pointerId) dragging = null; };
    pad.addEventListener("pointerup", stop);
    pad.addEventListener("pointercancel", stop);
    // keyboard: the arrow keys move the code, Shift for bigger steps
    pad.addEventListener("keydown", function (e) {
      const m = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]}[e.key];
      if (!m) return;
      e.preventDefault();
      const step = (e.shiftKey ? 0.2 : 0.04) * half, ab = coords();
      moveTo(ab[0] + m[0] * step, ab[1] + m[1] * step);
    });

    const prior = $(".vae-live-prior");
    if (prior) prior.addEventListener("click", function () {
      for (let i = 0; i < d; i++) z[i] = gaussian();
      update();
    });
    const flatten = $(".vae-live-flatten");
    if (flatten) flatten.addEventListener("click", function () {
      const ab = coords(), u = dir(plane[0]), v = dir(plane[1]);
      for (let i = 0; i < d; i++) z[i] = ab[0] * u[i] + ab[1] * v[i];
      update();
    });
    root.querySelectorAll(".vae-live-axis").forEach(function (menu) {
      menu.addEventListener("change", function () {
        const which = Number(menu.dataset.axis), other = 1 - which, chosen = Number(menu.value);
        if (chosen === plane[other]) {  // the same direction twice spans no plane: swap them
          plane[other] = plane[which];
          root.querySelector('.vae-live-axis[data-axis="' + other + '"]').value = String(plane[other]);
        }
        plane[which] = chosen;
        scatter = null;
        update();
      });
    });

    if (p.walk) {
      const codes = f32(p.walk.codes), pixels = bytes(p.walk.images), n = H * W;
      const menuA = $(".vae-live-walk-a"), menuB = $(".vae-live-walk-b"), slider = $(".vae-live-t");
      const thumbs = {a: $('.vae-live-thumb[data-end="a"]'), b: $('.vae-live-thumb[data-end="b"]')};
      const showThumb = function (canvas, k) {
        const g = canvas.getContext("2d"), img = g.createImageData(W, H), probs = new Float32Array(n);
        for (let i = 0; i < n; i++) probs[i] = pixels[k * n + i] / 255;
        paint(g, img, probs);
      };
      const walk = function () {
        const a = Number(menuA.value), b = Number(menuB.value), t = Number(slider.value);
        showThumb(thumbs.a, a);
        showThumb(thumbs.b, b);
        for (let i = 0; i < d; i++) z[i] = (1 - t) * codes[a * d + i] + t * codes[b * d + i];
        update();
      };
      [menuA, menuB].forEach(function (m) { m.addEventListener("change", walk); });
      slider.addEventListener("input", walk);
      showThumb(thumbs.a, Number(menuA.value));
      showThumb(thumbs.b, Number(menuB.value));
    }

    root.vaeLive = {
      decode: function (code) { return Array.from(decode(Float64Array.from(code))); },
      code: function () { return Array.from(z); },
      setCode: function (code) { z.set(code); update(); },
      coords: coords,
      // The largest pixel difference from PyTorch's output on the codes the export checked.
      check: function () {
        const probs = f32(p.check.probs), n = H * W;
        let worst = 0;
        p.check.codes.forEach(function (code, k) {
          const mine = decode(Float64Array.from(code));
          for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(mine[i] - probs[k * n + i]));
        });
        return worst;
      },
    };

    $(".vae-live-body").hidden = false;
    $(".vae-live-fallback").hidden = true;
    update();
    if (window.ResizeObserver) new ResizeObserver(function () { drawPad(); }).observe(pad);
    new MutationObserver(function () { scatter = null; drawPad(); })
      .observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme", "data-mode"]});
    root.classList.add("vae-live-ready");
  }

  function start(root) {
    try {
      setup(root);
    } catch (err) {
      console.error("vae-live: this figure could not start, so its static image stays:", err);
    }
  }

  // A figure whose data is in a script of its own: load it when the figure is within a screen's height.
  function loadWhenNear(root, data) {
    const load = function () {
      if (data.dataset.loading) return;
      data.dataset.loading = "1";
      const s = document.createElement("script");
      s.src = data.dataset.src;
      s.onerror = function () { console.error("vae-live: could not load " + data.dataset.src + ", so its static image stays"); };
      document.head.appendChild(s);
    };
    if (!window.IntersectionObserver) return load();
    const seen = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) { seen.disconnect(); load(); }
    }, {rootMargin: "100% 0px"});
    seen.observe(root);
  }

  window.vaeLiveData = function (key, json) {
    document.querySelectorAll('script.vae-live-data[data-key="' + key + '"]').forEach(function (data) {
      data.textContent = json;
      start(data.closest(".vae-live"));
    });
  };

  function init() {
    document.querySelectorAll(".vae-live").forEach(function (root) {
      const data = root.querySelector("script.vae-live-data");
      if (data && data.dataset.src && !data.textContent.trim()) loadWhenNear(root, data);
      else start(root);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
