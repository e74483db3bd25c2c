"""The ``harmlib`` command line: one entry point, one subcommand per task."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harmlib.config import ConfigError, parse_overrides


def _reproduce(args: argparse.Namespace) -> None:
    from harmlib.pipeline import build_book, run_notebooks

    params = parse_overrides(args.set) if args.set else {}
    run_notebooks(args.profile, Path(args.root), force=args.force, parameters=params)
    if not args.no_book:
        build_book(Path(args.root))


def _book(args: argparse.Namespace) -> None:
    from harmlib.pipeline import build_book

    build_book(Path(args.root))


def _synth(args: argparse.Namespace) -> None:
    from harmlib.config import load_config
    from harmlib.data.synthetic import write_cohort

    cfg = load_config(args.profile, parse_overrides(args.set) if args.set else None)
    out = Path(args.out) if args.out else cfg.data_dir
    print(f"harmlib: wrote {write_cohort(cfg, out, raw=not args.no_raw)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harmlib", description="Deep MRI harmonization: the papers' companion.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="run every notebook with papermill (resuming), then build the book")
    p.add_argument("--profile", default="cpu", help="tiny, cpu (default), paper, or the path of a YAML profile")
    p.add_argument("--root", default=".", help="the project root (holds notebooks/ and book/)")
    p.add_argument("--force", action="store_true", help="re-run notebooks whose inputs did not change")
    p.add_argument("--no-book", action="store_true", help="run the notebooks only")
    p.add_argument("--set", default="", help="extra papermill parameters, e.g. 'alpha=0.5,gamma=2'")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("synth", help="write the synthetic traveling-subject cohort and its manifest.csv")
    p.add_argument("--profile", default="cpu", help="tiny, cpu (default), paper, or the path of a YAML profile")
    p.add_argument("--out", default="", help="output folder (default: data/generated/<profile>)")
    p.add_argument("--set", default="", help="config overrides, e.g. 'seed=3,synth.n_test_per_site=2'")
    p.add_argument("--no-raw", action="store_true", help="skip the raw scanner-space volumes")
    p.set_defaults(func=_synth)

    p = sub.add_parser("book", help="build the book from the executed notebooks (never executes)")
    p.add_argument("--root", default=".", help="the project root")
    p.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harmlib.pipeline import PipelineError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, PipelineError, FileNotFoundError, ValueError) as err:  # DataError is a ValueError
        print(f"harmlib: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
