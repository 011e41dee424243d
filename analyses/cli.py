"""Command line: `python -m analyses run --spec 'kind=logit_lens&prompt=...'`.

stdout carries exactly one JSON document (or nothing, on error) — except `datasets add` and
`notebook add`, whose stdout is the new set's or notebook's reference alone; logs and progress go to stderr. Bad input
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
from analyses.core.spreadsheet import table_csv

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
    books = verbs.add_parser("notebook", help="notebooks: store one from a JSON file, export one, list them")
    book_verbs = books.add_subparsers(dest="action", required=True)
    book_add = book_verbs.add_parser("add", help="check a notebook JSON file (title, intro, steps of "
                                                 "link/title/note/figure) and store it; prints its reference")
    book_add.add_argument("file", type=Path)
    export = book_verbs.add_parser("export", help="write a notebook as one HTML file and/or Markdown")
    export.add_argument("notebook", help="a shipped name (ioi-walkthrough) or sha256:<hex>")
    export.add_argument("--html", type=Path, help="self-contained HTML (interactive figures)")
    export.add_argument("--md", type=Path, help="Markdown (links, notes, key numbers)")
    export.add_argument("--cached-only", action="store_true",
                        help="leave out steps not in the store instead of computing them")
    export.add_argument("--base-url", default="http://localhost:8501", help="the app the steps' links open")
    book_verbs.add_parser("list", help="the shipped notebooks and those in the store, as JSON")
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
        if suffix == ".csv":  # guarded against formulas, as the app's downloads are
            path.write_bytes(table_csv(frame))
        else:
            frame.to_parquet(path, index=False)
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


def _notebook(args) -> dict | None:
    """`notebook add|export|list`: the document to print, or None when stdout says it all."""
    from analyses import notebook as nb
    from analyses.core.notebooks import Notebook, NotebookError

    if args.action == "list":
        return {"notebooks": nb.listing()}
    if args.action == "add":
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as err:
            raise NotebookError(f"{args.file}: cannot be read ({err.strerror})") from None
        print(nb.save(Notebook.from_json(text)))  # the reference alone, as `datasets add` prints
        return None
    if not (args.html or args.md):
        raise NotebookError("notebook export: give --html FILE and/or --md FILE")
    book = nb.resolve(args.notebook)

    def progress(fraction: float, message: str) -> None:
        log.info("%3.0f%% %s", 100 * fraction, message)

    results = nb.results(book, compute_missing=not args.cached_only, progress=progress)
    for path, write in ((args.html, nb.to_html), (args.md, nb.to_markdown)):
        if path:
            path.write_text(write(book, results, base_url=args.base_url), encoding="utf-8")
            log.info("wrote %s", path)
    return {"notebook": book.reference, "steps": len(book.steps),
            "computed": sum(r is not None for r in results),
            "written": [str(p) for p in (args.html, args.md) if p]}


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
        elif args.verb == "notebook":
            document = _notebook(args)
            if document is None:
                return 0
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
