"""Command line: `python -m analyses run --spec 'kind=logit_lens&prompt=...'`.

stdout carries exactly one JSON document (or nothing, on error) — except `datasets add`,
whose stdout is the new set's reference alone; logs and progress go to stderr. Bad input
exits 2 with one line naming the problem; an unexpected failure exits 1 with one line,
never a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from analyses.core.errors import UserError
from analyses.core.jsonable import jsonable

log = logging.getLogger("analyses")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analyses", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run one analysis and print its tables as JSON")
    run.add_argument("--spec", required=True,
                     help="a URL query string (kind=logit_lens&prompt=Hello) or a JSON object")
    run.add_argument("--out", type=Path, help="also write the tables to FILE.csv or FILE.parquet "
                                              "(one file per table: FILE.<table>.csv)")
    run.add_argument("--no-cache", action="store_true", help="compute even if a stored result exists")
    run.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    run.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    verbs.add_parser("models", help="list the embedded models and those in the local HF cache")
    verbs.add_parser("kinds", help="list the analysis kinds, their fields and tables")
    sets = verbs.add_parser("datasets", help="prompt sets: add one from a file, or list them")
    set_verbs = sets.add_subparsers(dest="action", required=True)
    add = set_verbs.add_parser("add", help="check a JSONL or CSV file of rows and store it; prints "
                                           "its reference sha256:<hex> alone on stdout's last line")
    add.add_argument("file", type=Path)
    set_verbs.add_parser("list", help="the shipped sets and those in the store, as JSON")
    from analyses.dictionaries.cli import add_parser as add_dictionaries  # torch only when run

    add_dictionaries(verbs)
    return parser


def write_tables(tables: dict, out: Path) -> list[Path]:
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"--out: expected a .csv or .parquet file name, got {out.name!r}")
    written = []
    for name, frame in tables.items():
        path = out.with_name(f"{out.stem}.{name}{suffix}")
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
        written.append(path)
    return written


def _run(args) -> dict:
    from analyses.core.spec import AnalysisSpec

    spec = AnalysisSpec.parse(args.spec)  # a bad spec exits here, before any heavy import
    from analyses.runtime.service import compute

    def progress(fraction: float, message: str) -> None:
        log.info("%3.0f%% %s", 100 * fraction, message)

    result = compute(spec, cache=not args.no_cache, progress=progress, device=args.device,
                     dtype=args.dtype)
    if args.out:
        for path in write_tables(result.tables, args.out):
            log.info("wrote %s", path)
    return result.to_document()


def _kinds() -> dict:
    from analyses.core.catalogue import CATALOGUE

    return {k.name: {"summary": k.summary, "required": k.required, "optional": k.optional,
                     "defaults": k.defaults, "choices": k.choices, "tables": k.tables}
            for k in CATALOGUE.kinds()}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.verb == "run":
            document = _run(args)
        elif args.verb == "datasets":
            from analyses.runtime import datasets

            if args.action == "add":
                added = datasets.add(args.file)
                log.info("stored %s: %d rows (%s)", added.name, len(added.rows), ", ".join(added.fields))
                print(added.reference)  # the reference alone: a script can take the last line
                return 0
            document = {"datasets": datasets.listing()}
        elif args.verb == "dictionaries":
            from analyses.dictionaries.cli import run as run_dictionaries

            document = run_dictionaries(args)
        elif args.verb == "models":
            from analyses.runtime.models import available

            document = {"models": available()}
        else:
            document = {"kinds": _kinds()}
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug or a broken environment: one line, not a traceback
        print(f"internal error ({type(err).__name__}): {err}", file=sys.stderr)
        return 1
    json.dump(jsonable(document), sys.stdout, ensure_ascii=False, allow_nan=False)
    sys.stdout.write("\n")
    return 0
