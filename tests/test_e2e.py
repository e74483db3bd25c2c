"""End to end: the tiny profile through every notebook, the book build, and the explorer in Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import chromium_driver

import harmlib

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """A copy of the project's notebooks and book, run with the tiny profile and built."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_build", "notebooks"))
    cmd = [sys.executable, "-m", "harmlib.cli", "reproduce", "--profile", "tiny", "--root", str(root)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def test_every_notebook_is_executed_and_in_the_book(built_book):
    html = built_book / "book" / "_build" / "html"
    assert (html / "index.html").is_file()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        executed = json.loads((built_book / "book" / "notebooks" / nb.name).read_text())
        assert executed["metadata"]["papermill"]["parameters"]["profile"] == "tiny"
        assert (html / "notebooks" / f"{nb.stem}.html").is_file(), f"{nb.name} is missing from the book"
    page = (html / "notebooks" / "pipeline.html").read_text()
    assert "03_ssim_loss.ipynb" in page and "tiny" in page


def test_book_loads_no_widget_script_from_a_cdn(built_book):
    import re

    page = (built_book / "book" / "_build" / "html" / "notebooks" / "03_ssim_loss.html").read_text()
    assert "harmlib-ssim-explorer" in page
    external = [s for s in re.findall(r'<script[^>]*src="([^"]+)"', page) if s.startswith(("http:", "https:", "//"))]
    assert external == [], external  # MathJax too is served from the book (book/_mathjax)
    assert "embed-amd" not in page and "require.min.js" not in page


def test_second_run_skips_every_notebook(built_book):
    cmd = [
        sys.executable,
        "-m",
        "harmlib.cli",
        "reproduce",
        "--profile",
        "tiny",
        "--root",
        str(built_book),
        "--no-book",
    ]
    out = subprocess.run(cmd, cwd=built_book, capture_output=True, text=True, check=True).stdout
    n = len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert out.count("up to date") == n, out


def test_equations_are_typeset_offline_from_file(built_book):
    from selenium.webdriver.support.ui import WebDriverWait

    page = built_book / "book" / "_build" / "html" / "notebooks" / "03_ssim_loss.html"
    assert "\\alpha" in page.read_text()  # the page holds TeX for MathJax to typeset
    browser = chromium_driver(offline=True)
    try:
        browser.get(page.as_uri())
        typeset = WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return document.querySelectorAll('mjx-container').length")
        )
        raw = browser.execute_script("return document.body.innerText.includes('\\\\alpha')")
    finally:
        browser.quit()
    assert typeset > 0 and not raw  # MathJax ran and no raw TeX is left on the page


def test_the_landing_pages_first_screen_shows_the_brain_and_the_scorecard(built_book):
    """At 1400x1000 the landing page shows, before any scrolling, the landing figure and the scorecard."""
    page = built_book / "book" / "_build" / "html" / "intro.html"
    browser = chromium_driver(offline=True)
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        browser.set_window_size(1400, 1000)
        browser.get(page.as_uri())
        find = """const img = [...document.images].find(i => i.src.includes('landing'));
               const card = [...document.querySelectorAll('p')].find(p => p.textContent.includes('claims hold'));
               return img && card && img.complete ? [img.getBoundingClientRect().top, card.getBoundingClientRect().top,
                       window.innerHeight] : null;"""
        tops = WebDriverWait(browser, 20).until(lambda b: b.execute_script(find))  # the page and its figure loaded
    finally:
        browser.quit()
    img, card, height = tops
    assert 0 <= img < height and 0 <= card < height, tops
    import re

    link = re.search(r'href="([^"]*)"><span[^>]*>why, claim by claim', page.read_text())
    assert link and link.group(1) == "notebooks/10_what_reproduced.html", link  # the scorecard's link resolves


def test_the_3d_viewers_draw_offline_on_the_landing_page_and_the_model_chapters(built_book):
    """The landing page and chapters 05, 06 and 10 each hold a 3D viewer of one traveling subject (the scan, each
    model's and Nyul's output, the truth) that decodes and draws from file:// with no network."""
    html = built_book / "book" / "_build" / "html"
    pages = [html / "intro.html"] + [
        html / "notebooks" / f"{n}.html" for n in ("05_ssim_harmonizer", "06_gmm_drit", "10_what_reproduced")
    ]
    browser = chromium_driver(offline=True)
    found = {}
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        ready = "return [...document.querySelectorAll('.harmlib-volume-viewer')].map(v => v.dataset.ready || '')"
        for page in pages:
            browser.get(page.as_uri())
            states = WebDriverWait(browser, 30).until(lambda b: (s := b.execute_script(ready)) and all(s) and s)
            names = browser.execute_script(
                "return [...document.querySelector('.harmlib-volume-viewer').querySelectorAll('button')].map(b => b.textContent)"
            )
            found[page.stem] = (len(states), names)
    finally:
        browser.quit()
    assert set(found) == {p.stem for p in pages}, found
    for stem, (n, names) in found.items():
        assert n == 1 and names[0] == "input" and names[-1] == "truth at A" and "Nyul -> A" in names, (stem, names)
    assert "harmonizer 1 -> A" in found["05_ssim_harmonizer"][1]
    assert {"GMM-DRIT -> A", "DRIT++ -> A"} <= set(found["06_gmm_drit"][1])


def test_each_result_chapter_opens_with_its_key_result_box(built_book):
    """Chapters 04-10 open (before their first code cell) with a box of this run's headline numbers, glued from the
    tables the chapter wrote: the model chapters' gates, the evaluation chapters' claims, the score."""
    import re

    html = built_book / "book" / "_build" / "html" / "notebooks"
    want = {"04": "GM-VAE", "05": "SSIM-guided harmonizer", "06": "DRIT++", "07": "Paper 1", "08": "Table 3"}
    want |= {"09": "Paper 2", "10": "claims hold"}
    for page in sorted(html.glob("[01][0-9]_*.html")):
        if page.name[:2] not in want:
            continue
        text = page.read_text()
        box = re.search(
            r'<div class="[^"]*admonition[^"]*">\s*<p class="admonition-title">Key result.*?</div>', text, re.S
        )
        assert box, f"{page.name} has no key-result box"
        first_cell = re.search(r'<div class="cell[ "][^"]*docutils container', text)
        assert first_cell and box.start() < first_cell.start(), f"{page.name}: the box is not first"
        items = re.findall(r"<li>(.*?)</li>", box.group(0), re.S)
        assert items and want[page.name[:2]] in box.group(0), (page.name, items[:3])


def test_at_phone_width_no_page_scrolls_sideways(built_book):
    """At 420 px a wide table, dataframe or viewer scrolls inside its own box; the page itself never scrolls
    sideways (the claims table was 745 px wide in a 388 px column)."""
    html = built_book / "book" / "_build" / "html"
    pages = [html / "intro.html", *sorted((html / "notebooks").glob("[01][0-9]_*.html"))]
    browser = chromium_driver(offline=True)
    wide = {}
    try:
        browser.set_window_size(420, 900)
        for page in pages:
            browser.get(page.as_uri())
            over = browser.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            if over[0] > over[1] + 1:
                wide[page.name] = over
    finally:
        browser.quit()
    assert not wide, wide


def test_each_chapter_links_its_tables_and_models_and_the_links_resolve(built_book):
    """The downloads: each chapter links the CSVs it wrote (and a model chapter its model file), copied into the site."""
    import re

    html = built_book / "book" / "_build" / "html"
    linked = {}
    for page in sorted((html / "notebooks").glob("[0-9][0-9]_*.html")):
        links = re.findall(r'href="(\.\./downloads/[^"]+)"', page.read_text())
        linked[page.stem] = links
        for link in links:
            assert (page.parent / link).resolve().is_file(), f"{page.name}: {link} does not resolve"
    assert any(link.endswith("ssim_harmonizer.pt") for link in linked["05_ssim_harmonizer"])
    assert any(link.endswith("gate_ssim_harmonizer.csv") for link in linked["05_ssim_harmonizer"])
    assert any(link.endswith("what_reproduced.csv") for link in linked["10_what_reproduced"])


def test_no_rendered_table_shows_nan_or_negative_zero(built_book):
    """Tables for readers: no NaN (a missing value is an empty cell or says why) and no "-0.000" in any chapter."""
    import re

    html = built_book / "book" / "_build" / "html"
    bad = {}
    for page in sorted((html / "notebooks").glob("*.html")):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", page.read_text(), flags=re.S)
        found = [c.strip() for c in cells if re.search(r"(?<![\w.])(nan|NaN|None)(?![\w])|-0\.0+(?![0-9])", c)]
        if found:
            bad[page.name] = found[:5]
    assert not bad, bad


def test_every_page_loads_mathjax_once_and_logs_no_console_error(built_book):
    """Read offline as a reader would: each chapter loads the typesetting script once (not every .js under _static)
    and the browser's console shows no error."""
    import re

    html = built_book / "book" / "_build" / "html"
    pages = [html / "index.html", *sorted((html / "notebooks").glob("*.html"))]
    browser = chromium_driver(offline=True)
    errors = {}
    try:
        for page in pages:
            scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.read_text())
            mathjax = [s for s in scripts if "mathjax" in s.lower()]
            assert len(mathjax) <= 1, f"{page.name} loads MathJax {len(mathjax)} times: {mathjax[:3]}"
            browser.get(page.as_uri())
            browser.execute_script("return document.readyState")
            logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            if logged:
                errors[page.name] = logged[:3]
    finally:
        browser.quit()
    assert not errors, errors


def _decode(b64: str, shape: list[int]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4").reshape(shape)


def test_static_explorer_recomputes_like_harmlib(built_book):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page = built_book / "book" / "_build" / "html" / "notebooks" / "03_ssim_loss.html"
    browser = chromium_driver()
    try:
        browser.get(page.as_uri())
        root = browser.find_element(By.CSS_SELECTOR, ".harmlib-ssim-explorer")
        spec = json.loads(
            root.find_element(By.CSS_SELECTOR, "script[type='application/json']").get_attribute("textContent")
        )
        shown = root.find_element(By.CSS_SELECTOR, ".ssim-value")
        before = shown.text
        slider = root.find_element(By.CSS_SELECTOR, "input[data-param='alpha']")
        browser.execute_script("arguments[0].focus()", slider)
        for _ in range(7):  # move the slider with the keyboard, as a reader would
            slider.send_keys(Keys.ARROW_LEFT)
        gamma = root.find_element(By.CSS_SELECTOR, "input[data-param='gamma']")
        browser.execute_script("arguments[0].focus()", gamma)
        for _ in range(6):
            gamma.send_keys(Keys.ARROW_RIGHT)
        params = {
            el.get_attribute("data-param"): float(el.get_attribute("value"))
            for el in root.find_elements(By.CSS_SELECTOR, "input[data-param]")
        }
        after = shown.text
        value = float(after.split("SSIM = ")[1].split()[0])
    finally:
        browser.quit()
    assert after != before
    assert params["alpha"] == pytest.approx(0.65) and params["gamma"] == pytest.approx(1.3)
    x, y = (torch.from_numpy(_decode(spec[k], spec["shape"]).copy())[None, None] for k in ("x", "y"))
    expected = harmlib.ssim(
        x,
        y,
        params["alpha"],
        params["beta"],
        params["gamma"],
        data_range=spec["data_range"],
        win_size=int(params["win_size"]),
        sigma=params["sigma"],
        k1=params["k1"],
        k2=params["k2"],
    ).item()
    assert value == pytest.approx(expected, abs=1e-4)


# Every table of issue 6, with the columns a reader (and the "What reproduced" page) relies on.
TABLES = {
    "paper1_table2": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "paper1_structural_ssim": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "paper1_table3": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "paper1_table4": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "paper1_table3_folds": {"version", "fold", "mae", "rmse", "r2"},
    "paper1_table4_folds": {"version", "fold", "accuracy", "balanced_accuracy", "auc"},
    "traveling_subjects_paper1": {
        "metric",
        "target",
        "version",
        "paper",
        "ours",
        "PSNR to truth (dB)",
        "ssim_mean",
        "psnr_mean",
        "claim holds",
        "profile",
    },
    "traveling_subjects_paper2": {
        "metric",
        "target",
        "version",
        "paper",
        "ours",
        "PSNR to truth (dB)",
        "ssim_mean",
        "psnr_mean",
        "claim holds",
        "profile",
    },
    "paper2_e1_clustering": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "paper2_table1": {
        "metric",
        "version",
        "paper",
        "ours",
        "claim holds",
        "profile",
        "difference GMM-DRIT - DRIT++ (95 % CI)",
    },
    "paper2_table2": {
        "metric",
        "version",
        "paper",
        "ours",
        "claim holds",
        "target",
        "difference GMM-DRIT - DRIT++ (95 % CI)",
    },
    "paper2_table3": {"metric", "version", "paper", "ours", "claim holds", "post - pre (95 % CI)"},
    "paper2_e5_fid_kid": {"metric", "version", "paper", "ours", "claim holds", "profile"},
    "what_reproduced": {"claim", "verdict", "ours", "compared", "paper", "profile", "why", "table"},
    "classical_bar": {
        "target",
        "method",
        "scale-invariant SSIM to truth",
        "tissue-contrast error",
        "share of the rescan gap closed",
    },
    **{
        f"gate_{m}": {"model", "criterion", "value", "threshold", "passed", "profile"}
        for m in ("ssim_harmonizer", "gmvae", "gmm_drit", "drit")
    },
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_is_written_with_its_columns_and_finite_values(built_book, name):
    import pandas as pd

    path = built_book / "runs" / "tiny" / "tables" / f"{name}.csv"
    assert path.is_file(), f"{path} was not written"
    df = pd.read_csv(path)
    assert len(df) and TABLES[name] <= set(df.columns), (name, sorted(df.columns))
    if name.startswith(
        "gate_"
    ):  # the rows with a threshold are the criteria; the others carry context (before / after)
        crit = df[df["threshold"].notna()]
        assert len(crit) and np.isfinite(crit[["value", "threshold"]].astype(float).to_numpy()).all(), crit
        return
    numeric = df.select_dtypes("number").drop(columns=["paper"], errors="ignore")  # text; all empty: no paper value
    assert np.isfinite(numeric.to_numpy()).all(), numeric
    if "ours" in df.columns and name != "what_reproduced":  # "mean ± sd" cells parse to finite numbers
        values = df["ours"].astype(str).str.split("±", expand=True).astype(float)
        assert np.isfinite(values.to_numpy()).all(), df["ours"]
    if "profile" in df.columns:
        assert set(df["profile"]) == {"tiny"}


def test_what_reproduced_page_lists_every_claim(built_book):
    from harmlib.evaluation.claims import CLAIMS

    page = (built_book / "book" / "_build" / "html" / "notebooks" / "10_what_reproduced.html").read_text()
    for claim, *_ in CLAIMS:
        assert claim.split(":")[0] in page
    assert "not measured" not in page  # every table was there
    import pandas as pd

    claims = pd.read_csv(built_book / "runs" / "tiny" / "tables" / "what_reproduced.csv")
    assert claims["ours"].notna().all() and claims["compared"].notna().all()  # both sides of every comparison
    assert claims["why"].str.contains(" vs | < | > | = ").all()  # each reason quotes the numbers of both sides
    assert "compared with" in page  # the table's header
    assert "Downstream beside ComBat" in page and "harmonizer 1 -&gt; agnostic" in page  # Tables 3-4 side by side
    assert (
        'profile = "cpu"      # tiny' not in page
    )  # the notebook's own defaults, overridden by papermill, are not shown


def test_set_up_cells_are_collapsed_in_the_book_and_visible_in_the_notebooks(built_book):
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        executed = json.loads((built_book / "book" / "notebooks" / nb.name).read_text())
        tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
        assert any("injected-parameters" in t and "hide-cell" in t for t in tags), nb.name
        assert all("remove-cell" in t for t in tags if "parameters" in t), nb.name
        code = [c["metadata"].get("tags", []) for c in executed["cells"] if c["cell_type"] == "code"]
        assert all(any(x.startswith(("hide-", "remove-")) for x in t) for t in code), nb.name  # code collapsed
        source = json.loads(nb.read_text())
        assert not any("remove-cell" in c["metadata"].get("tags", []) for c in source["cells"]), nb.name
