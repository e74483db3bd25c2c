// SSIM-exponent explorer for the static book: recomputes harmlib.ssim in the browser.
// Same conventions as harmlib/ssim.py: separable Gaussian window, "valid" filtering,
// C1 = (k1 R)^2, C2 = (k2 R)^2, C3 = C2 / 2, odd extension sign(t)|t|^e for negative terms.
(function () {
  "use strict";
  const POW_EPS = 1e-6, VAR_EPS = 1e-12;

  function decode(b64) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }

  function gaussian(win, sigma) {
    const r = (win - 1) / 2, g = new Float64Array(win);
    let s = 0;
    for (let k = 0; k < win; k++) { g[k] = Math.exp(-((k - r) ** 2) / (2 * sigma * sigma)); s += g[k]; }
    for (let k = 0; k < win; k++) g[k] /= s;
    return g;
  }

  // Valid separable filter of an (h, w) image: returns (h - win + 1, w - win + 1).
  function filter(img, h, w, g) {
    const win = g.length, ow = w - win + 1, oh = h - win + 1;
    const tmp = new Float64Array(h * ow), out = new Float64Array(oh * ow);
    for (let i = 0; i < h; i++)
      for (let j = 0; j < ow; j++) {
        let s = 0;
        for (let k = 0; k < win; k++) s += g[k] * img[i * w + j + k];
        tmp[i * ow + j] = s;
      }
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let s = 0;
        for (let k = 0; k < win; k++) s += g[k] * tmp[(i + k) * ow + j];
        out[i * ow + j] = s;
      }
    return out;
  }

  function spow(t, e) {
    if (e === 1) return t;
    if (e === 0) return 1;
    const sg = t > 0 ? 1 : t < 0 ? -1 : 0;
    return sg * Math.pow(Math.max(Math.abs(t), POW_EPS), e);
  }

  function components(x, y, h, w, p) {
    const g = gaussian(p.win_size, p.sigma), n = h * w, R = p.data_range;
    const c1 = (p.k1 * R) ** 2, c2 = (p.k2 * R) ** 2, c3 = c2 / 2, eps = VAR_EPS * R * R;
    const xx = new Float64Array(n), yy = new Float64Array(n), xy = new Float64Array(n);
    for (let i = 0; i < n; i++) { xx[i] = x[i] * x[i]; yy[i] = y[i] * y[i]; xy[i] = x[i] * y[i]; }
    const mx = filter(x, h, w, g), my = filter(y, h, w, g);
    const exx = filter(xx, h, w, g), eyy = filter(yy, h, w, g), exy = filter(xy, h, w, g);
    const m = mx.length, l = new Float64Array(m), c = new Float64Array(m), s = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      const vx = Math.max(exx[i] - mx[i] * mx[i], 0), vy = Math.max(eyy[i] - my[i] * my[i], 0);
      const cov = exy[i] - mx[i] * my[i], sx = Math.sqrt(vx + eps), sy = Math.sqrt(vy + eps);
      l[i] = (2 * mx[i] * my[i] + c1) / (mx[i] * mx[i] + my[i] * my[i] + c1);
      c[i] = (2 * sx * sy + c2) / (vx + vy + c2);
      s[i] = (cov + c3) / (sx * sy + c3);
    }
    return { l: l, c: c, s: s, h: h - p.win_size + 1, w: w - p.win_size + 1 };
  }

  // The colour ramp (harmlib.widgets.RAMP, in the page's spec; its colorbar shows it); maps [lo, hi] to RGB.
  let RAMP = [[68, 1, 84], [253, 231, 37]];
  function color(v, lo, hi) {
    const t = Math.min(Math.max((v - lo) / (hi - lo), 0), 1) * (RAMP.length - 1);
    const i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
    return RAMP[i].map((a, k) => Math.round(a + f * (RAMP[i + 1][k] - a)));
  }

  // Arrays are (h, w) row-major with rows along the slice's first axis; like the notebook's
  // imshow(slice.T, origin="lower"), the first axis runs left to right and the second upwards.
  function draw(canvas, data, h, w, lo, hi, gray) {
    canvas.width = h; canvas.height = w;
    const ctx = canvas.getContext("2d"), im = ctx.createImageData(h, w);
    for (let r = 0; r < h; r++)
      for (let q = 0; q < w; q++) {
        const v = data[r * w + q], px = ((w - 1 - q) * h + r) * 4;
        const rgb = gray ? Array(3).fill(Math.round(255 * Math.min(Math.max((v - lo) / (hi - lo), 0), 1))) : color(v, lo, hi);
        im.data[px] = rgb[0]; im.data[px + 1] = rgb[1]; im.data[px + 2] = rgb[2]; im.data[px + 3] = 255;
      }
    ctx.putImageData(im, 0, 0);
  }

  function setup(root) {
    const spec = JSON.parse(root.querySelector("script[type='application/json']").textContent);
    RAMP = spec.ramp || RAMP;
    const x = decode(spec.x), y = decode(spec.y), h = spec.shape[0], w = spec.shape[1];
    const inputs = root.querySelectorAll("input[data-param]");
    const params = () => {
      const p = { data_range: spec.data_range };
      inputs.forEach((el) => { p[el.dataset.param] = parseFloat(el.value); });
      p.win_size = Math.round(p.win_size);
      return p;
    };
    let comp = null, key = "";
    function update() {
      const p = params();
      inputs.forEach((el) => { root.querySelector(`[data-show='${el.dataset.param}']`).textContent = el.value; });
      const k = [p.win_size, p.sigma, p.k1, p.k2].join(",");
      if (k !== key) { comp = components(x, y, h, w, p); key = k; }
      const m = comp.l.length, comb = new Float64Array(m);
      let sum = 0;
      for (let i = 0; i < m; i++) {
        comb[i] = spow(comp.l[i], p.alpha) * spow(comp.c[i], p.beta) * spow(comp.s[i], p.gamma);
        sum += comb[i];
      }
      const value = sum / m;
      const out = root.querySelector(".ssim-value");
      out.dataset.value = String(value);
      out.textContent = `SSIM = ${value.toFixed(5)}   L_SSIM = 1 - SSIM = ${(1 - value).toFixed(5)}`;
      draw(root.querySelector("canvas[data-map='l']"), comp.l, comp.h, comp.w, 0, 1, false);
      draw(root.querySelector("canvas[data-map='c']"), comp.c, comp.h, comp.w, 0, 1, false);
      draw(root.querySelector("canvas[data-map='s']"), comp.s, comp.h, comp.w, -1, 1, false);
      draw(root.querySelector("canvas[data-map='ssim']"), comb, comp.h, comp.w, -1, 1, false);
    }
    draw(root.querySelector("canvas[data-map='x']"), x, h, w, 0, spec.data_range, true);
    draw(root.querySelector("canvas[data-map='y']"), y, h, w, 0, spec.data_range, true);
    inputs.forEach((el) => el.addEventListener("input", update));
    update();
  }

  document.querySelectorAll(".harmlib-ssim-explorer:not([data-ready])").forEach((root) => {
    root.dataset.ready = "1";
    setup(root);
  });
})();
