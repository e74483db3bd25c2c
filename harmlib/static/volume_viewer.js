// The book's offline 3D viewer (harmlib.widgets.viewer_html): linked orthogonal slices of several versions of one
// volume (the scan, each harmonization, the truth), a slider and buttons to switch between them. No kernel, no
// network, no WebGL: the volumes are uint8, zlib-compressed and base64-encoded in the page, decoded with the
// browser's DecompressionStream, drawn on 2D canvases.
// Defined once per page; each viewer's own script calls it with its root element.
window.harmlibVolumeViewer = window.harmlibVolumeViewer || function (root) {
  if (!root || root.dataset.started) return;
  root.dataset.started = "1";
  const spec = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  const [nx, ny, nz] = spec.shape;
  const [sx, sy, sz] = spec.spacing;
  const vols = new Array(spec.versions.length);
  const pos = spec.shape.map((n) => Math.floor(n / 2));
  let current = 0;

  async function inflate(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // Voxel (i, j, k) of a C-ordered (nx, ny, nz) array, as numpy wrote it.
  const at = (v, i, j, k) => v[(i * ny + j) * nz + k];

  // Each view: its canvas size in voxels and the voxel behind canvas pixel (u, w), w counted from the top.
  // RAS volumes: axial shows x to the right and anterior up, coronal and sagittal superior up.
  const views = {
    axial: { w: nx, h: ny, sw: sx, sh: sy, voxel: (u, w) => [u, ny - 1 - w, pos[2]], cross: () => [pos[0], ny - 1 - pos[1]], set: (u, w) => { pos[0] = u; pos[1] = ny - 1 - w; } },
    coronal: { w: nx, h: nz, sw: sx, sh: sz, voxel: (u, w) => [u, pos[1], nz - 1 - w], cross: () => [pos[0], nz - 1 - pos[2]], set: (u, w) => { pos[0] = u; pos[2] = nz - 1 - w; } },
    sagittal: { w: ny, h: nz, sw: sy, sh: sz, voxel: (u, w) => [pos[0], u, nz - 1 - w], cross: () => [pos[1], nz - 1 - pos[2]], set: (u, w) => { pos[1] = u; pos[2] = nz - 1 - w; } },
  };

  function draw() {
    const v = vols[current];
    for (const [name, view] of Object.entries(views)) {
      const canvas = root.querySelector(`canvas[data-view='${name}']`);
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(view.w, view.h);
      for (let w = 0; w < view.h; w++) {
        for (let u = 0; u < view.w; u++) {
          const [i, j, k] = view.voxel(u, w);
          const g = at(v, i, j, k);
          const p = 4 * (w * view.w + u);
          img.data[p] = img.data[p + 1] = img.data[p + 2] = g;
          img.data[p + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
      const [cu, cw] = view.cross();
      ctx.fillStyle = "rgba(255, 80, 80, 0.55)";
      ctx.fillRect(cu, 0, 1, view.h);
      ctx.fillRect(0, cw, view.w, 1);
    }
    const value = at(v, pos[0], pos[1], pos[2]) / 255 * spec.top;
    root.querySelector("[data-show='version']").textContent = spec.versions[current].name;
    root.querySelector("[data-show='voxel']").textContent =
      `voxel (${pos.join(", ")}): ${value.toFixed(2)} x the volume's brain p${spec.percentile}`;
    root.querySelector("input[data-control='version']").value = current;
    root.querySelectorAll("button[data-version]").forEach((b) => {
      b.style.fontWeight = Number(b.dataset.version) === current ? "bold" : "normal";
    });
    root.dataset.version = spec.versions[current].name;
  }

  function select(n) {
    current = Math.max(0, Math.min(vols.length - 1, n));
    draw();
  }

  function wire() {
    for (const [name, view] of Object.entries(views)) {
      const canvas = root.querySelector(`canvas[data-view='${name}']`);
      canvas.width = view.w;
      canvas.height = view.h;
      canvas.style.width = `${view.w * view.sw * spec.scale}px`;
      canvas.style.height = `${view.h * view.sh * spec.scale}px`;
      canvas.addEventListener("click", (e) => {
        const r = canvas.getBoundingClientRect();
        const u = Math.floor((e.clientX - r.left) / r.width * view.w);
        const w = Math.floor((e.clientY - r.top) / r.height * view.h);
        view.set(Math.max(0, Math.min(view.w - 1, u)), Math.max(0, Math.min(view.h - 1, w)));
        draw();
      });
    }
    root.querySelector("input[data-control='version']").addEventListener("input", (e) => select(Number(e.target.value)));
    root.querySelectorAll("button[data-version]").forEach((b) => b.addEventListener("click", () => select(Number(b.dataset.version))));
    root.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") select(current + (e.key === "ArrowRight" ? 1 : -1));
    });
  }

  Promise.all(spec.versions.map((v, n) => inflate(v.data).then((a) => { vols[n] = a; })))
    .then(() => {
      if (vols.some((a) => a.length !== nx * ny * nz)) throw new Error("harmlib viewer: a volume has the wrong size");
      wire();
      draw();
      root.dataset.ready = "1";
    })
    .catch((err) => {
      root.querySelector("[data-show='voxel']").textContent = `the viewer could not decode its volumes: ${err}`;
    });
};
