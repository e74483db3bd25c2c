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

    p = sub.add_parser("book", help="build the book from the executed notebooks (never executes)")
    p.add_argument("--root", default=".", help="the project root")
    p.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harmlib.pipeline import PipelineError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, PipelineError, FileNotFoundError, ValueError) as err:
        print(f"harmlib: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
