"""The pipeline driver behind ``make reproduce``: run every notebook with papermill, then the book.

Notebooks ``notebooks/NN_*.ipynb`` run in order with ``-p profile P``. Each executed copy lands in
``book/notebooks/`` (where the book reads it) only when its run succeeded, beside a stamp that
records a hash of its inputs: the notebook, the profile file, the parameters, the harmlib source
and the stamp of the notebook before it. A notebook whose hash is unchanged is skipped, so running
again after a failure resumes at the notebook that failed. A failed run stops the pipeline with one
line naming the notebook and the cell, and keeps the partial copy under ``runs/<profile>/failed/``.

The book is then built by Jupyter Book 1 with ``execute_notebooks: off``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harmlib.config import check_notebook_parameter, load_config, profile_path

HARMLIB_DIR = Path(__file__).parent


class PipelineError(RuntimeError):
    """A notebook or the book build failed; the message says where and what to do."""


@dataclass(frozen=True)
class Layout:
    """Where the driver reads and writes, relative to the project root."""

    root: Path

    @property
    def notebooks(self) -> list[Path]:
        return sorted((self.root / "notebooks").glob("[0-9][0-9]_*.ipynb"))

    @property
    def executed(self) -> Path:
        return self.root / "book" / "notebooks"

    def stamp(self, nb: Path) -> Path:
        return self.executed / ".stamps" / f"{nb.stem}.json"

    def failed(self, run_dir: Path, nb: Path) -> Path:
        """Where the partial copy of a failed notebook is kept: ``<run dir>/failed/`` (``runs/<profile name>``, also
        for a profile given as a path)."""
        return self.root / run_dir / "failed" / nb.name


# What a chapter reads from an earlier one: {name: (path under the config's folders, the notebook that makes it)}.
MADE_BY = {
    "cohort": (lambda cfg: cfg.data_dir / "manifest.csv", "01_data.ipynb"),
    "gmvae": (lambda cfg: cfg.run_dir / "models" / "gmvae.pt", "04_gmvae.ipynb"),
    "ssim_harmonizer": (lambda cfg: cfg.run_dir / "models" / "ssim_harmonizer.pt", "05_ssim_harmonizer.ipynb"),
    "gmm_drit": (lambda cfg: cfg.run_dir / "models" / "gmm_drit.pt", "06_gmm_drit.ipynb"),
    "drit": (lambda cfg: cfg.run_dir / "models" / "drit.pt", "06_gmm_drit.ipynb"),
}


class MissingInput(FileNotFoundError):
    """An input an earlier chapter writes is not there; in a notebook it shows as its one line, not a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of the traceback
        return [f"MissingInput: {self}"]


def needs(cfg: Any, *inputs: str) -> None:
    """A chapter run on its own (Binder, a reader's Jupyter) stops at once, in one line naming the notebook to run
    first, when an input an earlier chapter writes is missing (``inputs``: keys of `MADE_BY`)."""
    for name in inputs:
        where, notebook = MADE_BY[name]
        path = where(cfg)
        if not path.is_file():
            raise MissingInput(
                f"{path} is missing: run notebooks/{notebook} first (profile {cfg.profile}), or `make reproduce`"
            )


def _sha(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(hashlib.sha256(c).digest())
    return h.hexdigest()


def library_hash() -> str:
    """A hash of harmlib's source, profiles and static files (a change re-runs every notebook)."""
    files = sorted(
        p for p in HARMLIB_DIR.rglob("*") if p.suffix in (".py", ".yaml", ".js") and "__pycache__" not in p.parts
    )
    return _sha(*(str(p.relative_to(HARMLIB_DIR)).encode() + p.read_bytes() for p in files))


def input_hash(nb: Path, profile: str, parameters: dict[str, Any], previous: str, lib: str) -> str:
    return _sha(
        nb.read_bytes(),
        profile.encode(),
        profile_path(profile).read_bytes(),
        json.dumps(parameters, sort_keys=True).encode(),
        previous.encode(),
        lib.encode(),
    )


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _read_stamp(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# A slow laptop is not a hung kernel: a notebook is stopped only when it shows no sign of progress (no new
# output saved in its partial copy, no file written under runs/<profile>/) for this long. Training cells
# print a progress bar and checkpoint, so they count as alive however slow the machine is.
STALL_S = 20 * 60


def _last_progress(paths: list[Path]) -> float:
    """The newest modification time of these files, or of any file below these folders."""
    newest = 0.0
    for p in paths:
        try:
            if p.is_dir():
                for dirpath, _, files in os.walk(p):
                    for f in files:
                        newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime)
            elif p.exists():
                newest = max(newest, p.stat().st_mtime)
        except OSError:  # a file replaced while we looked: it was written, so it counts next time
            continue
    return newest


def _kill_kernels() -> None:
    """Kill the kernels this process started (papermill's); papermill then reports a dead kernel."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                child.kill()
        except psutil.Error:
            continue


def _watched(run, watch: list[Path], stall_s: float) -> bool:
    """Run ``run()`` in a thread while watching ``watch`` for progress; True if it was stopped for a stall.

    Exceptions of ``run`` are re-raised here. Ctrl-C kills the kernel and re-raises KeyboardInterrupt.
    """
    import threading

    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            run()
        except BaseException as err:  # handed to the caller's thread
            box["err"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    seen, stalled = time.time(), False
    poll = min(
        10.0, stall_s / 4
    )  # walking runs/ is not free: look every 10 s, more often only for short limits (tests)
    try:
        while worker.is_alive():
            worker.join(poll)
            seen = max(seen, _last_progress(watch))
            if not stalled and time.time() - seen > stall_s:
                stalled = True
                _kill_kernels()
    except KeyboardInterrupt:
        _kill_kernels()
        worker.join(30)
        raise
    if "err" in box:
        if stalled:
            return True
        raise box["err"]
    return stalled


def _quiet_kernel_channels() -> None:
    """A killed kernel makes jupyter_client/zmq log tracebacks from its channels; the driver says it in one line."""
    import logging

    for name in ("traitlets", "papermill", "nbclient", "jupyter_client", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _execute(
    nb: Path, out: Path, parameters: dict[str, Any], cwd: Path, failed: Path, runs: Path, stall_s: float = STALL_S
) -> float:
    """Run one notebook to ``out`` (atomically); on failure raise PipelineError naming the cell."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    partial = out.with_name(f".partial-{out.name}")
    t0 = time.perf_counter()
    _quiet_kernel_channels()

    def keep_failed() -> None:
        """The partial copy moves to ``failed``; if it cannot, it goes: no ``.partial-*`` is ever left in the book."""
        if not partial.exists():
            return
        try:
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, failed)
        except OSError:
            partial.unlink(missing_ok=True)

    def run() -> None:
        pm.execute_notebook(
            str(nb), str(partial), parameters=parameters, cwd=str(cwd), kernel_name="python3", progress_bar=True
        )

    try:
        stalled = _watched(run, [partial, runs], stall_s)
    except KeyboardInterrupt:
        keep_failed()
        raise PipelineError(f"interrupted in {nb.relative_to(cwd)}; nothing half-written; rerun to resume") from None
    except DeadKernelError:
        keep_failed()
        raise PipelineError(
            f"notebook {nb.relative_to(cwd)} stopped: the kernel died (out of memory?); run again to resume at this notebook -- partial copy: {failed}"
        ) from None
    except pm.PapermillExecutionError as err:
        keep_failed()
        raise PipelineError(
            f"notebook {nb.relative_to(cwd)} failed at cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {str(err.evalue).splitlines()[0] if err.evalue else ''} -- the executed copy with the traceback is {failed}"
        ) from None
    if stalled:
        keep_failed()
        raise PipelineError(
            f"notebook {nb.relative_to(cwd)} stopped: no progress for {stall_s:g} s (no output, no file written under {runs.relative_to(cwd)}): "
            f"the kernel hung; run again to resume at this notebook (training resumes from its checkpoint) -- partial copy: {failed}"
        )
    _fold_parameter_cells(partial)
    os.replace(partial, out)
    return time.perf_counter() - t0


def _fold_parameter_cells(path: Path) -> None:
    """The book shows one parameter cell, collapsed: papermill's injected cell (the values this run used) gets
    myst-nb's ``hide-cell`` tag and the notebook's own defaults, which it overrides, ``remove-cell``; every other code
    cell's input is collapsed under its output (``hide-input``). The notebooks under notebooks/ keep everything
    visible; only the executed copy the book reads is tagged."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        extra = "hide-cell" if "injected-parameters" in tags else "remove-cell" if "parameters" in tags else None
        if extra is None and cell.cell_type == "code" and not any(t.startswith(("hide-", "remove-")) for t in tags):
            extra = "hide-input"  # the book reads as a paper: code collapsed under its output (open it with a click)
        if extra and extra not in tags:
            tags.append(extra)
    nbformat.write(nb, str(path))


def run_notebooks(
    profile: str = "cpu",
    root: Path = Path("."),
    force: bool = False,
    parameters: dict[str, Any] | None = None,
    stall_s: float = STALL_S,
) -> list[dict[str, Any]]:
    """Execute every notebook in order; skip those whose inputs are unchanged. Returns the stamps.

    ``stall_s``: a notebook with no new output and no file written under ``runs/<profile>/`` for this
    many seconds has hung and is stopped (a slow machine is not stopped: its progress bars count).
    """
    cfg = load_config(profile)  # fail early, with a clear line, on an unknown profile or a broken file
    lay = Layout(root.resolve())
    if not lay.notebooks:
        raise PipelineError(f"no notebooks found under {lay.root / 'notebooks'}; run from the project root")
    known = {name for nb in lay.notebooks for name in _notebook_parameters(nb)}
    for name, value in (
        parameters or {}
    ).items():  # papermill only warns on unknown parameters: check before any notebook runs
        check_notebook_parameter(name, value, known, cfg)
    params = {"profile": profile, **(parameters or {})}
    lib, previous, stamps = library_hash(), "", []
    lay.executed.mkdir(parents=True, exist_ok=True)
    for nb in lay.notebooks:
        out, stamp_path = lay.executed / nb.name, lay.stamp(nb)
        digest = input_hash(nb, profile, params, previous, lib)
        stamp = _read_stamp(stamp_path)
        if not force and stamp.get("hash") == digest and out.is_file():
            print(f"harmlib: {nb.name} is up to date (profile {profile}), skipped", flush=True)
        else:
            print(f"harmlib: running {nb.name} (profile {profile})", flush=True)
            runs = lay.root / cfg.run_dir
            runs.mkdir(parents=True, exist_ok=True)
            seconds = _execute(nb, out, params, lay.root, lay.failed(cfg.run_dir, nb), runs, stall_s)
            stamp = {
                "notebook": nb.name,
                "hash": digest,
                "profile": profile,
                "parameters": params,
                "seconds": round(seconds, 1),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            _write_json_atomic(stamp_path, stamp)
        stamps.append(stamp)
        previous = digest
    return stamps


def _ran_with(executed: Path) -> dict[str, Any]:
    """The parameters an executed notebook ran with (papermill's record), {} when it has not run."""
    try:
        return json.loads(executed.read_text())["metadata"]["papermill"]["parameters"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _shown(value: Any) -> str:
    """A parameter's value on the pipeline page; None means the profile's value."""
    return "the profile's" if value in (None, "None") else repr(value) if isinstance(value, str) else str(value)


def _notebook_parameters(nb: Path) -> dict[str, str]:
    """The parameters cell of a notebook, as name -> default (source text)."""
    import papermill as pm

    return {name: str(p["default"]) for name, p in pm.inspect_notebook(str(nb)).items()}


def write_pipeline_page(root: Path = Path(".")) -> Path:
    """``book/notebooks/pipeline.md``: every notebook, its parameters and its last run time."""
    lay = Layout(root.resolve())
    lines = [
        "# The notebooks and their parameters",
        "",
        "Every chapter of this book is a notebook executed by `make reproduce` with papermill. Change a "
        "parameter and re-run one notebook with, for example:",
        "",
        "```bash",
        ".venv/bin/papermill notebooks/03_ssim_loss.ipynb book/notebooks/03_ssim_loss.ipynb -p profile cpu -p alpha 0.5",
        "```",
        "",
        "| notebook | parameters it ran with | profile | run time (s) | finished |",
        "|---|---|---|---|---|",
    ]
    for nb in lay.notebooks:
        ran = _ran_with(lay.executed / nb.name)
        defaults = _notebook_parameters(nb)
        params = ", ".join(f"`{k} = {_shown(ran.get(k, v))}`" for k, v in defaults.items())
        st = _read_stamp(lay.stamp(nb))
        lines.append(
            f"| `{nb.name}` | {params} | {st.get('profile', 'not run')} | {st.get('seconds', '')} | {st.get('finished', '')} |"
        )
    page = lay.executed / "pipeline.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_name(".pipeline.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, page)
    return page


def write_landing_page(root: Path = Path(".")) -> Path:
    """``book/verdict.md`` (included at the top of the landing page): the last run's verdict and one brain.

    The scorecard of every claim (``what_reproduced.csv``, chapter 10) and the landing figure (one traveling subject
    at an unseen site harmonized to A by each model and by Nyul, beside the truth; ``figures/landing.png``, chapter
    10) of the profile chapter 10 last ran with, then the same subject in the 3D viewer (``figures/landing_viewer.html``);
    before any run, one line saying how to make them."""
    from harmlib.evaluation.claims import scorecard_markdown

    book = root.resolve() / "book"
    profile = _last_profile(root.resolve())
    lines = []
    if profile:
        run = root.resolve() / load_config(profile).run_dir
        table, figure = run / "tables" / "what_reproduced.csv", run / "figures" / "landing.png"
        lines.append(f"## The verdict of this build (profile {profile})")
        (book / "_generated").mkdir(exist_ok=True)
        if figure.is_file():
            shutil.copy2(figure, book / "_generated" / "landing.png")
            lines += [
                "",
                "```{figure} _generated/landing.png",
                ":alt: one traveling subject at an unseen site, harmonized to site A by each model and by Nyul, beside the truth at A",
                "",
                "One subject scanned at a site no model saw in training, harmonized to site A by each model and by "
                "Nyul's classical pipeline, beside the same anatomy rendered at A (the truth). Look at the deep grey "
                "nuclei and the cortex: a global intensity curve cannot change their contrast separately.",
                "```",
            ]
        if table.is_file():
            lines += ["", scorecard_markdown(pd.read_csv(table, dtype=str, keep_default_na=False))]
        viewer = run / "figures" / "landing_viewer.html"
        if viewer.is_file():  # the same subject in 3D, below the first screen (raw HTML: the viewer draws itself)
            shutil.copy2(viewer, book / "_generated" / "landing_viewer.html")
            lines += [
                "",
                "### The same subject in 3D",
                "",
                "```{raw} html",
                ":file: _generated/landing_viewer.html",
                "```",
            ]
    else:
        lines.append("*No run yet: `make reproduce` fills this page with the verdict of every claim and a brain.*")
    page = book / "verdict.md"
    tmp = page.with_name(".verdict.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, page)
    return page


# MathJax is served from the book itself (book/_mathjax/mathjax, `mathjax_path` in book/_config.yml), so the
# equations typeset from file:// with no network. The version is pinned: the npm package is fetched once.
MATHJAX = "mathjax@3.2.2"
MATHJAX_PARTS = (
    "tex-mml-chtml.js",
    "input/",
    "output/chtml",
    "ui/",
    "a11y/",
    "adaptors/",
)  # es5/: no speech rule engine, no SVG output


def ensure_mathjax(book: Path) -> Path:
    """``book/_mathjax/mathjax``: MathJax 3's es5 build (the parts the book loads), fetched from npm once.

    Not under ``_static``: Jupyter Book adds every ``.js`` there to every page, which loaded MathJax twice (and all of
    its 53 files); ``html_extra_path`` copies ``_mathjax`` into the site as it is, and ``mathjax_path`` loads it once.

    Written to a temporary folder and renamed, with a marker naming the version, so a killed fetch never
    leaves a half copy that counts as done. Set ``HARMLIB_MATHJAX`` to a local ``es5`` folder to skip npm.
    """
    import tarfile
    import tempfile

    dest = book / "_mathjax" / "mathjax"
    marker = dest / ".version"
    if marker.is_file() and marker.read_text().strip() == MATHJAX and (dest / MATHJAX_PARTS[0]).is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix=".mathjax-", dir=book) as tmp:
        es5 = Path(os.environ.get("HARMLIB_MATHJAX", "")) if os.environ.get("HARMLIB_MATHJAX") else None
        if es5 is None:
            npm = shutil.which("npm")
            if npm is None:
                raise PipelineError(
                    f"npm is needed once to fetch {MATHJAX} for the book's offline equations: install it (sudo apt-get install npm) "
                    "or set HARMLIB_MATHJAX to a MathJax 3 es5/ folder"
                )
            print(f"harmlib: fetching {MATHJAX} from npm for the book's equations (once)", flush=True)
            proc = subprocess.run([npm, "pack", MATHJAX, "--silent"], cwd=tmp, capture_output=True, text=True)
            tgz = next(Path(tmp).glob("mathjax-*.tgz"), None)
            if proc.returncode != 0 or tgz is None:
                raise PipelineError(
                    f"npm pack {MATHJAX} failed ({proc.stderr.strip().splitlines()[-1:] or 'no package'}); "
                    "check the npm registry is reachable, or set HARMLIB_MATHJAX to a MathJax 3 es5/ folder"
                )
            with tarfile.open(tgz) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith("package/es5/")]
                try:
                    tar.extractall(tmp, members=members, filter="data")
                except TypeError:  # Python < 3.10.12 has no extraction filters; the members are the es5 files only
                    tar.extractall(tmp, members=members)
            es5 = Path(tmp) / "package" / "es5"
        if not (es5 / MATHJAX_PARTS[0]).is_file():
            raise PipelineError(
                f"{es5} has no {MATHJAX_PARTS[0]}: not a MathJax 3 es5/ folder; unset HARMLIB_MATHJAX or point it at one"
            )
        staged = Path(tmp) / "mathjax"
        for part in MATHJAX_PARTS:
            src = es5 / part.rstrip("/")
            if src.is_dir():
                shutil.copytree(src, staged / part.rstrip("/"))
            elif src.is_file():
                (staged / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, staged / part)
        (staged / ".version").write_text(MATHJAX + "\n")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
    return dest


def build_book(root: Path = Path(".")) -> Path:
    """Build the book with Jupyter Book 1 into ``book/_build/html``; never executes notebooks."""
    root = root.resolve()
    if not (root / "book" / "_toc.yml").is_file():
        raise PipelineError(
            f"{root / 'book'} has no _toc.yml: not a project root; run 'harmlib book --root <the folder that holds book/ and notebooks/>'"
        )
    ensure_mathjax(root / "book")
    write_pipeline_page(root)
    write_landing_page(root)
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"), "build", str(root / "book")]
    print("harmlib: building the book:", " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=root).returncode != 0:
        raise PipelineError(
            "the book build failed (see the Sphinx messages above); fix the page it names and run 'make book'"
        )
    copy_downloads(root)
    dedupe_inline_scripts(root / "book" / "_build" / "html")
    index = root / "book" / "_build" / "html" / "index.html"
    print(f"harmlib: the book is at {index}", flush=True)
    return index


def dedupe_inline_scripts(html: Path) -> int:
    """Drop the second copy of an inline ``<script>`` line from every page: sphinx-thebe 0.3 (through Jupyter Book 1)
    writes its ``const THEBE_JS_URL ...`` line twice on pages with code, and the repeated ``const`` is an uncaught
    SyntaxError in every browser. Returns how many lines were dropped."""
    dropped = 0
    for page in html.rglob("*.html"):
        seen, out, changed = set(), [], False
        for line in page.read_text(encoding="utf-8").splitlines(keepends=True):
            key = line.strip()
            if key.startswith("<script>") and key.endswith("</script>") and key in seen:
                changed, dropped = True, dropped + 1
                continue
            seen.add(key)
            out.append(line)
        if changed:
            page.write_text("".join(out), encoding="utf-8")
    return dropped


def _last_profile(root: Path) -> str | None:
    """The profile the last chapter (What reproduced) ran with, from its stamp; None before any run."""
    lay = Layout(root)
    last = next((nb for nb in reversed(lay.notebooks) if nb.name.startswith("10_")), None)
    return _read_stamp(lay.stamp(last)).get("profile") if last else None


def copy_downloads(root: Path) -> Path:
    """The run's tables (CSV) and model files into the built site's ``downloads/``, where the chapters link them."""
    from harmlib.evaluation.tables import DOWNLOADS

    site = root / "book" / "_build" / "html" / DOWNLOADS
    profile = _last_profile(root)
    if profile is None:
        return site
    run = root / load_config(profile).run_dir
    for kind, pattern in (("tables", "*.csv"), ("models", "*.pt")):
        (site / kind).mkdir(parents=True, exist_ok=True)
        for f in sorted((run / kind).glob(pattern)):
            shutil.copy2(f, site / kind / f.name)
    return site
