"""The ``harmlib`` command line: one entry point, one subcommand per task."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from harmlib.config import ConfigError, parse_overrides


def _reproduce(args: argparse.Namespace) -> None:
    from harmlib.pipeline import build_book, run_notebooks

    params = parse_overrides(args.set) if args.set else {}
    if not args.stall_minutes > 0:
        raise ValueError(
            f"--stall-minutes {args.stall_minutes} is invalid; use a positive number of minutes (default 20)"
        )
    run_notebooks(args.profile, Path(args.root), force=args.force, parameters=params, stall_s=60 * args.stall_minutes)
    if not args.no_book:
        build_book(Path(args.root))


def _book(args: argparse.Namespace) -> None:
    from harmlib.pipeline import build_book

    build_book(Path(args.root))


def _synth(args: argparse.Namespace) -> None:
    from harmlib.config import load_config
    from harmlib.data.io import folder_lock
    from harmlib.data.synthetic import write_cohort

    cfg = load_config(args.profile, parse_overrides(args.set) if args.set else None)
    out = Path(args.out) if args.out else cfg.data_dir
    with folder_lock(out):  # a second synth into this folder now is refused, not interleaved
        print(f"harmlib: wrote {write_cohort(cfg, out, raw=not args.no_raw)}")


def _preprocess(args: argparse.Namespace) -> None:
    from harmlib.data.io import folder_lock
    from harmlib.preprocess import preprocess_manifest

    with folder_lock(args.out_dir):  # a second preprocess into this folder now is refused, not interleaved
        out, qc = preprocess_manifest(
            args.manifest,
            args.out_dir,
            voxel_mm=args.voxel_mm,
            workers=args.workers,
            skull_strip=args.skull_strip,
            keep_going=args.keep_going,
        )
    print(f"harmlib: wrote {out} and {Path(args.out_dir) / 'qc.csv'}")
    failed = int((qc["status"] == "failed").sum())
    if failed:  # --keep-going went on; the run still did not do everything it was asked
        raise ValueError(
            f"{failed} of {len(qc)} volume(s) failed to preprocess (listed above and in {Path(args.out_dir) / 'qc.csv'}); fix them and rerun"
        )


def _harmonize(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from harmlib.data.io import folder_lock, remove_stale_temporaries
    from harmlib.data.manifest import read_manifest
    from harmlib.harmonize import check_input, check_output, harmonize_file, load_harmonizer, resolution_note
    from harmlib.provenance import bids_output, write_dataset_description

    inputs = [(Path(p), "", "") for p in args.inputs]  # (file, the manifest's subject and session)
    if args.manifest:
        man = read_manifest(args.manifest)
        inputs += list(zip(man.paths(), man.df["subject"].astype(str), man.df["session"].astype(str)))
    if not inputs:
        raise ValueError("no input volumes; give NIfTI files or --manifest M")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: --out-dir is a file, not a folder; choose a folder")
    _check_device(args.device)
    model = load_harmonizer(args.model, args.device)
    target = model.target(args.target)  # parsed once: an unknown target fails before any file is read
    # Outputs keep their input's name, or (--bids) go where BIDS derivatives put them.
    outputs = [
        bids_output(out_dir, p, args.target, sub, ses) if args.bids else out_dir / p.name for p, sub, ses in inputs
    ]
    seen: dict[Path, Path] = {}
    for p, _, _ in inputs:  # the same file twice (a typo, a glob and a manifest): say so, not "separate folders"
        key = p.resolve()
        if key in seen:
            raise ValueError(f"{p}: listed twice (also as {seen[key]}); list each input once")
        seen[key] = p
    if len(set(outputs)) != len(outputs):
        same = "subject and session" if args.bids else "file name"
        raise ValueError(
            f"two inputs share a {same}, so their outputs would collide; harmonize them into separate --out-dir folders"
        )
    # All or nothing: every input and output is checked before the first output is written.
    notes = []
    for (p, _, _), out in tqdm(list(zip(inputs, outputs)), desc="checking inputs", unit="vol", leave=False):
        check_output(p, out, args.overwrite)
        notes.append(resolution_note(model, check_input(p, model).affine, p))
    for note in filter(None, notes):
        print(note, file=sys.stderr)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"{out_dir}: cannot create the output folder ({err.strerror}); choose a writable --out-dir"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"{out_dir}: the output folder is not writable; choose another --out-dir")
    try:
        with folder_lock(out_dir):  # a second run into this folder now is refused, not interleaved
            remove_stale_temporaries(out_dir)  # what a killed earlier run left (ours by name), before this one writes
            if args.bids:
                write_dataset_description(out_dir)
            for (p, _, _), out in tqdm(list(zip(inputs, outputs)), desc=f"harmonize -> {args.target}", unit="vol"):
                harmonize_file(model, p, out, target, seed=args.seed, overwrite=args.overwrite, model_file=args.model)
    except BaseException:
        if created and not any(f.is_file() for f in out_dir.rglob("*") if f.name != "dataset_description.json"):
            shutil.rmtree(out_dir)  # no empty output folder is left behind
        raise
    print(f"harmlib: wrote {len(inputs)} volume(s) and their provenance sidecars (.json) to {out_dir}")


def _check_device(device: str) -> None:
    import torch

    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"--device {device}: unknown device; use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: this PyTorch build sees no CUDA GPU; use --device cpu (or install a CUDA build of torch)"
        )


def _models(args: argparse.Namespace) -> None:
    from harmlib.checkpoint import CheckpointError, load_checkpoint
    from harmlib.evaluation.claims import gate_line
    from harmlib.evaluation.tables import read_gates
    from harmlib.provenance import model_info

    # one read per run's tables, as text (a context row's empty threshold stays "")
    gates_of = functools.lru_cache(read_gates)
    found = sorted(Path(args.runs).glob("*/models/*.pt"))
    if not found:
        print(f"harmlib: no models under {args.runs}/<profile>/models/; 'make reproduce' trains them")
    for path in found:
        try:
            ck = load_checkpoint(path)
            info = model_info(ck)
            gates = gates_of(path.parent.parent / "tables")
            mine = gates[gates["model"] == info["kind"]] if len(gates) else gates
            gate = gate_line(mine) if len(mine) else "no quality gate computed"
            print(
                f"{path}  kind={info['kind']}  profile={info['profile']}  steps={info['steps']}  voxel={ck.get('voxel_mm', '?')} mm  "
                f"created={info['created']}  sites: {', '.join(info['sites'])}\n    quality gate: {gate}"
            )
        except CheckpointError as err:
            print(f"{path}  unreadable: {err}")
        except (
            KeyError,
            TypeError,
            AttributeError,
        ) as err:  # a file of ours, but not with the metadata a model file has
            print(
                f"{path}  unreadable: unexpected model-file metadata ({type(err).__name__}: {str(err)[:80]}); export the model again"
            )


def _int_at_least(low: int, high: int = 2**32 - 1):
    """An argparse type: an integer in [``low``, ``high``] (a seed fits numpy's and torch's: < 2^32); anything else
    is one line naming the option's value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use an integer in [{low}, {high}]")
        return value

    return parse


def _resume_hint(args: argparse.Namespace) -> str:
    """What to run after an interruption: harmonize keeps the outputs it finished, so its rerun skips them only with
    --overwrite (the finished ones are whole); the other commands resume by themselves."""
    if args.command == "harmonize" and not args.overwrite:
        return "rerun the same command with --overwrite to redo the remaining volumes (finished outputs are whole)"
    return "rerun the same command to resume"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option (and the fix: --help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"harmlib: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harmlib", description="Deep MRI harmonization: the papers' companion.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="run every notebook with papermill (resuming), then build the book")
    p.add_argument("--profile", default="cpu", help="tiny, cpu (default), paper, or the path of a YAML profile")
    p.add_argument("--root", default=".", help="the project root (holds notebooks/ and book/)")
    p.add_argument("--force", action="store_true", help="re-run notebooks whose inputs did not change")
    p.add_argument("--no-book", action="store_true", help="run the notebooks only")
    p.add_argument("--set", default="", help="extra papermill parameters, e.g. 'alpha=0.5,gamma=2'")
    p.add_argument(
        "--stall-minutes",
        type=float,
        default=20.0,
        help="stop a notebook that shows no progress (no output, no file written under runs/) for this long (default 20)",
    )
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("synth", help="write the synthetic traveling-subject cohort and its manifest.csv")
    p.add_argument("--profile", default="cpu", help="tiny, cpu (default), paper, or the path of a YAML profile")
    p.add_argument("--out", default="", help="output folder (default: data/generated/<profile>)")
    p.add_argument("--set", default="", help="config overrides, e.g. 'seed=3,synth.n_test_per_site=2'")
    p.add_argument("--no-raw", action="store_true", help="skip the raw scanner-space volumes")
    p.set_defaults(func=_synth)

    p = sub.add_parser("preprocess", help="raw T1 NIfTI -> RAS, N4, affine to MNI152, FSL grid, normalized")
    p.add_argument("--manifest", required=True, help="manifest.csv of the raw volumes")
    p.add_argument("--out-dir", required=True, help="output folder (volumes/, qc/, qc.csv, manifest.csv)")
    p.add_argument(
        "--voxel-mm",
        type=int,
        default=1,
        choices=(1, 2, 4),
        help="output grid: the FSL MNI grid at 1 (default), 2 or 4 mm",
    )
    p.add_argument("--workers", type=_int_at_least(1), default=2, help="parallel processes")
    p.add_argument("--skull-strip", action="store_true", help="skull-strip with deepbet (pip install deepbet)")
    p.add_argument(
        "--keep-going", action="store_true", help="go on after a failed volume and list the failures at the end"
    )
    p.set_defaults(func=_preprocess)

    p = sub.add_parser(
        "harmonize",
        help="harmonize MNI-aligned T1 NIfTI files with a trained model",
        description="Harmonize MNI-aligned T1 NIfTI files with a trained model. Each output is on its input's grid and at "
        "its resolution (same shape, affine and header): the model runs on its own grid (the voxel size `harmlib models` "
        "lists, 2 mm for the cpu profile) and what it changes is applied to the scan where it is (the intensity curve to "
        "every voxel, the site field and the networks' change upsampled), so a 1 mm scan comes back a 1 mm scan with its "
        "own detail. A scan coarser than the model's grid is harmonized on its own grid too, with a one-line note.",
    )
    p.add_argument("inputs", nargs="*", help="input NIfTI files (preprocessed, MNI-aligned)")
    p.add_argument("--manifest", default="", help="a manifest.csv whose volumes to harmonize (as well)")
    p.add_argument("--model", required=True, help="a model file, e.g. runs/cpu/models/ssim_harmonizer.pt")
    p.add_argument("--target", required=True, help="a training site (name, scanner@site or site) or agnostic")
    p.add_argument("--out-dir", required=True, help="output folder; each output keeps its input's file name")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the agnostic noise code")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--bids",
        action="store_true",
        help="write a BIDS-derivatives layout: sub-<s>/anat/sub-<s>_desc-harmonized<Target>_T1w.nii.gz and dataset_description.json",
    )
    p.set_defaults(func=_harmonize)

    p = sub.add_parser("models", help="list the trained models under runs/")
    p.add_argument("--runs", default="runs", help="the runs folder")
    p.set_defaults(func=_models)

    p = sub.add_parser("book", help="build the book from the executed notebooks (never executes)")
    p.add_argument("--root", default=".", help="the project root")
    p.set_defaults(func=_book)
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's kill, `timeout`) ends a run as Ctrl-C does: temporary files removed, one line."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from harmlib.pipeline import PipelineError

    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        args.func(args)
    except OSError as err:  # from the system: a folder that cannot be made or written (read-only, /proc, chattr +i)
        if err.errno is None:  # one of ours (a FileNotFoundError with its own sentence)
            print(f"harmlib: error: {err}", file=sys.stderr)
            return 1
        where = err.filename or "the output"
        print(
            f"harmlib: error: {where}: cannot be created or written ({err.strerror}); choose a folder this user can write to",
            file=sys.stderr,
        )
        return 1
    except (ConfigError, PipelineError, ValueError) as err:  # DataError is a ValueError
        print(f"harmlib: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except KeyboardInterrupt:
        print(f"harmlib: interrupted; nothing half-written; {_resume_hint(args)}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
