"""The driver on two small notebooks: order, resume, failure reporting, atomic outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from harmlib.pipeline import PipelineError, run_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "cpu"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture()
def project(tmp_path) -> Path:
    _notebook(tmp_path / "notebooks" / "01_first.ipynb", "open('first.log', 'a').write(profile + '\\n')")
    _notebook(tmp_path / "notebooks" / "02_second.ipynb", "open('second.log', 'a').write(profile + '\\n')")
    return tmp_path


def _runs(root: Path, name: str) -> int:
    p = root / f"{name}.log"
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_runs_in_order_then_skips_unchanged(project, capsys):
    stamps = run_notebooks("tiny", project)
    assert [s["notebook"] for s in stamps] == ["01_first.ipynb", "02_second.ipynb"]
    assert (_runs(project, "first"), _runs(project, "second")) == (1, 1)
    executed = json.loads((project / "book" / "notebooks" / "02_second.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"profile": "tiny"}
    run_notebooks("tiny", project)
    assert (_runs(project, "first"), _runs(project, "second")) == (1, 1)
    assert capsys.readouterr().out.count("up to date") == 2


def test_a_changed_notebook_reruns_it_and_those_after(project):
    run_notebooks("tiny", project)
    _notebook(project / "notebooks" / "01_first.ipynb", "open('first.log', 'a').write('changed\\n')")
    run_notebooks("tiny", project)
    assert (_runs(project, "first"), _runs(project, "second")) == (2, 2)


def test_another_profile_reruns(project):
    run_notebooks("tiny", project)
    run_notebooks("cpu", project)
    assert (project / "second.log").read_text().splitlines() == ["tiny", "cpu"]


def test_failure_names_notebook_and_cell_keeps_good_output_and_resumes(project):
    run_notebooks("tiny", project)
    good = (project / "book" / "notebooks" / "02_second.ipynb").read_text()
    _notebook(project / "notebooks" / "02_second.ipynb", "raise ValueError('bad site name')")
    with pytest.raises(PipelineError) as err:
        run_notebooks("tiny", project)
    msg = str(err.value)
    assert "notebooks/02_second.ipynb failed at cell 2" in msg and "ValueError: bad site name" in msg
    assert "\n" not in msg
    assert (project / "runs" / "tiny" / "failed" / "02_second.ipynb").is_file()
    assert (project / "book" / "notebooks" / "02_second.ipynb").read_text() == good  # the last good copy survives
    assert not list((project / "book" / "notebooks").glob(".partial-*"))
    # fix it: the first notebook is not run again, the second is
    _notebook(project / "notebooks" / "02_second.ipynb", "open('second.log', 'a').write('fixed\\n')")
    run_notebooks("tiny", project)
    assert _runs(project, "first") == 1 and (project / "second.log").read_text().splitlines()[-1] == "fixed"


def test_project_notebooks_are_clean_parameterized_and_in_the_toc():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    nbs = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert nbs
    for path in nbs:
        nb = nbformat.read(path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and params[0].source.splitlines()[0].startswith('profile = "cpu"'), path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{path.name} is committed with outputs"
        )
        assert f"notebooks/{path.stem}" in toc, f"{path.name} is not in book/_toc.yml"


def test_environment_yml_installs_the_project_not_a_second_list():
    env = (ROOT / "environment.yml").read_text()
    assert "-e .[all]" in env
    assert "torch==2.13.0" in env and "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_a_hung_cell_stops_with_a_clear_line(project):
    _notebook(project / "notebooks" / "02_second.ipynb", "import time; time.sleep(120)")
    t0 = time.perf_counter()
    with pytest.raises(PipelineError, match=r"02_second.ipynb stopped: no progress for 4 s") as err:
        run_notebooks("tiny", project, stall_s=4)
    assert "\n" not in str(err.value) and time.perf_counter() - t0 < 90
    assert (project / "book" / "notebooks" / "01_first.ipynb").is_file()
    assert not (project / "book" / "notebooks" / "02_second.ipynb").exists()
    assert (project / "runs" / "tiny" / "failed" / "02_second.ipynb").is_file()


def test_a_slow_cell_that_shows_progress_is_not_stopped(project):
    # 12 s of work, a sign of life every second (a file under runs/, as a training log is): longer than the stall limit
    body = "import time, pathlib\nfor i in range(12):\n    time.sleep(1); pathlib.Path('runs/tiny/log.csv').write_text(str(i))"
    _notebook(project / "notebooks" / "02_second.ipynb", body)
    stamps = run_notebooks("tiny", project, stall_s=5)
    assert stamps[-1]["seconds"] >= 12


def test_a_chapter_run_on_its_own_names_the_notebook_to_run_first(tmp_path):
    """Binder or a reader's Jupyter on a clean clone: a missing input is one line naming the notebook that makes
    it (and IPython shows that line, not a traceback)."""
    import harmlib
    from harmlib.pipeline import MissingInput, needs

    cfg = harmlib.load_config("tiny", {"synth.out_dir": str(tmp_path / "none")})
    with pytest.raises(MissingInput, match=r"manifest.csv is missing: run notebooks/01_data.ipynb first") as err:
        needs(cfg, "cohort")
    assert err.value._render_traceback_() == [f"MissingInput: {err.value}"] and "\n" not in str(err.value)
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "manifest.csv").write_text("x")
    needs(cfg, "cohort")  # present: nothing to say


def test_every_chapter_declares_the_earlier_outputs_it_reads():
    """Each notebook that reads the cohort or a model file calls needs() for it, before reading it."""
    import json
    import re
    from pathlib import Path

    from harmlib.pipeline import MADE_BY

    root = Path(__file__).resolve().parents[1] / "notebooks"
    reads = {
        "cohort": r'cfg\.data_dir / "manifest\.csv"',
        **{k: rf'"{k}\.pt"' for k in MADE_BY if k != "cohort"},
    }
    for nb in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        cells = ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        declared = set(re.findall(r"'(\w+)'", " ".join(re.findall(r"needs\(cfg, ([^)]*)\)", "\n".join(cells)))))
        for name, pattern in reads.items():
            if MADE_BY[name][1] == nb.name:
                continue
            for cell in cells:
                for m in re.finditer(rf"(\w+) = [^\n]*{pattern}", cell):
                    var = m.group(1)
                    optional = f"{var}.exists()" in cell or f"{var}.is_file()" in cell  # read only when it exists
                    assert optional or name in declared, f"{nb.name} reads {name} without needs(cfg, '{name}')"


def test_the_landing_page_opens_with_the_last_runs_verdict_and_its_brain(tmp_path):
    """book/verdict.md (included at the top of the landing page): before any run one line saying how to fill it;
    after chapter 10 ran, its figure and the scorecard of every claim."""
    import json
    import shutil
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from harmlib.pipeline import write_landing_page

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "book").mkdir()
    shutil.copytree(root / "notebooks", tmp_path / "notebooks")
    page = write_landing_page(tmp_path)
    assert "No run yet" in page.read_text()
    stamps = tmp_path / "book" / "notebooks" / ".stamps"
    stamps.mkdir(parents=True)
    (stamps / "10_what_reproduced.json").write_text(json.dumps({"profile": "tiny"}))
    run = tmp_path / "runs" / "tiny"
    (run / "tables").mkdir(parents=True)
    (run / "figures").mkdir()
    claims = pd.DataFrame(
        {
            "verdict": ["holds", "does not hold", "model below its quality gate"],
            "claim": ["a", "b", "c"],
            "ours": ["0.9", "0.1", "0.5"],
            "paper": ["0.8", "0.7", "0.6"],
        }
    )
    claims.to_csv(run / "tables" / "what_reproduced.csv", index=False)
    plt.figure().savefig(run / "figures" / "landing.png")
    text = write_landing_page(tmp_path).read_text()
    assert "profile tiny" in text and "**1 of 3 claims hold**, 1 do not, 1 rest on a model below" in text
    assert "_generated/landing.png" in text and (tmp_path / "book" / "_generated" / "landing.png").is_file()
    assert text.index("landing.png") < text.index("claims hold")  # the brain first, then the scorecard
    (run / "figures" / "landing_viewer.html").write_text('<div class="harmlib-volume-viewer"></div>')
    text = write_landing_page(tmp_path).read_text()
    assert ":file: _generated/landing_viewer.html" in text and text.index("claims hold") < text.index("in 3D")
    assert (tmp_path / "book" / "_generated" / "landing_viewer.html").is_file()
