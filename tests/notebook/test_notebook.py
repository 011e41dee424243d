"""Notebooks headless: built from links, stored by content, exported as HTML and Markdown, with
notes that can inject nothing; the shipped IOI walkthrough opens and its steps reproduce."""
import json
import os
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyses import AnalysisSpec, compute
from analyses import notebook as nb
from analyses.cli import main
from analyses.core.notebooks import Notebook, NotebookError, shipped, shipped_names
from analyses.runtime.store import Store

REPO = Path(__file__).resolve().parents[2]
PROMPT = "When Mary and John went to the store, John gave a drink to"
ATTACK = ("<script>window.pwned = 1</script> <img src=x onerror=alert(1)> "
          "![x](http://127.0.0.1:1/x.png) [click](javascript:alert(1)) **kept**")

HEAVY = ("torch", "transformers", "transformer_lens")

pytestmark = pytest.mark.usefixtures("private_cache")


def fresh_python(code: str, **env) -> dict:
    """Run `code` in a new interpreter (nothing imported before); it prints one JSON object last."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1", **env))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class Tags(HTMLParser):
    """Every element of a document (script bodies are text, not parsed) and, separately,
    those inside a `class="note"` element."""

    def __init__(self):
        super().__init__()
        self.all, self.in_notes, self._depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.all.append((tag, dict(attrs)))
        if self._depth:
            self.in_notes.append((tag, dict(attrs)))
            self._depth += tag not in ("br", "hr")
        elif dict(attrs).get("class") == "note":
            self._depth = 1

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1


def tags_of(document: str) -> Tags:
    parser = Tags()
    parser.feed(document)
    return parser


def tiny_links(model_dir) -> list[str]:
    return [AnalysisSpec(kind="logit_lens", model=str(model_dir), prompt=PROMPT, top_k=2).to_query(),
            "http://example.org:8501/attention?" + AnalysisSpec(kind="attention", model=str(model_dir),
                                                                 prompt="Once upon a time").to_query(),
            AnalysisSpec(kind="dla", model=str(model_dir), prompt=PROMPT, answer=" Mary",
                         wrong=" John").to_query()]


def test_a_notebook_is_named_by_its_content_and_checks_its_steps():
    links = ["kind=dla&prompt=Hi&answer=%20x", "http://host:8501/dla?kind=dla&answer=%20x&prompt=Hi"]
    book = nb.build(links, notes=["first"], title="T")
    assert book.steps[0].link == book.steps[1].link  # a share link and its query: one canonical text
    assert book.steps[1].note == ""
    assert nb.build(links, notes=["first"], title="T").reference == book.reference
    assert book.with_edit(1, note="changed").reference != book.reference
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", book.reference)
    assert Notebook.from_json(book.to_json()) == book
    assert book.moved(1, -1).steps[0].note == "" and book.without(0).steps[0].note == ""
    with pytest.raises(NotebookError, match=r"step 2: link: top_k: expected an integer"):
        nb.build(["kind=dla&prompt=Hi&answer=%20x", "kind=logit_lens&prompt=Hi&top_k=abc"])
    with pytest.raises(NotebookError, match=r"step 1: unknown field 'html'"):
        Notebook.from_dict({"steps": [{"link": "kind=dla&prompt=Hi&answer=%20x", "html": "<b>"}]})


def test_the_store_keeps_notebooks_by_reference(store):
    book = nb.build(["kind=dla&prompt=Hi&answer=%20x"], notes=["a note"], title="Kept")
    assert store.get_notebook(book.reference) is None
    assert nb.save(book, store) == book.reference
    assert nb.save(book, store) == book.reference  # again: nothing to do
    assert store.get_notebook(book.reference) == book
    assert nb.resolve(book.reference, store) == book
    assert [r["reference"] for r in store.notebook_rows()] == [book.reference]
    reopened = Store(store.path)  # another process's view of the same file
    assert reopened.get_notebook(book.reference) == book
    with pytest.raises(NotebookError, match="is not in this store"):
        nb.resolve("sha256:" + "0" * 64, store)
    with pytest.raises(NotebookError, match="neither a shipped notebook"):
        nb.resolve("../../etc/passwd", store)
    assert not Store(store.path, read_only=True).put_notebook(book.with_edit(0, note="x"))


def test_a_note_renders_markdown_but_no_html_and_no_image():
    html = nb.note_html(ATTACK)
    tags = [tag for tag, _ in tags_of(html).all]
    assert tags == ["p", "strong"]  # the bold kept; the rest is text
    assert "127.0.0.1:1" not in "".join(str(attrs) for _, attrs in tags_of(html).all)
    assert "&lt;script&gt;" in html and "javascript:" in html  # shown as text, never a link
    linked = tags_of(nb.note_html("[ok](https://example.org)")).all
    assert linked[1] == ("a", {"href": "https://example.org", "rel": "noopener noreferrer nofollow",
                               "target": "_blank"})


def test_html_export_is_self_contained_with_figures_numbers_links_and_safe_notes(tiny_gpt2_dir):
    links = tiny_links(tiny_gpt2_dir)
    book = nb.build(links, notes=[ATTACK, "plain", ""], title="Three <b>steps</b>")
    results = nb.results(book)
    document = nb.to_html(book, results, base_url="http://workbench.test")
    parsed = tags_of(document)
    assert not [t for t, _ in parsed.all if t in ("img", "iframe", "object", "embed", "link")]
    assert [t for t, _ in parsed.in_notes] == ["p", "strong", "p"]  # two notes, no element from HTML
    assert "127.0.0.1:1" not in "".join(str(a) for _, a in parsed.all)
    assert not [a for _, a in parsed.all if "src" in a]  # nothing fetched: plotly.js is inline
    assert "window.pwned" not in re.sub(r"&lt;script&gt;window\.pwned", "", document)
    assert document.count("plotly.js v") == 1 or document.count("* plotly.js") == 1  # one bundle
    assert len(re.findall(r'<div id="figure-\d"', document)) == 3
    for step in book.steps:
        assert f'href="http://workbench.test/{step.kind}?{step.link.replace("&", "&amp;")}"' in document
    assert "<title>Three &lt;b&gt;steps&lt;/b&gt;</title>" in document
    label, value = nb.key_numbers(results[2])[0]  # DLA: the largest contribution first
    assert f"<td>{label}</td>" in document and value in document
    values = results[2].tables["contributions"]["value"]
    assert float(value) == pytest.approx(values[values.abs().idxmax()], rel=1e-2)


def test_markdown_export_has_links_numbers_and_neutralised_notes(tiny_gpt2_dir):
    book = nb.build(tiny_links(tiny_gpt2_dir), notes=[ATTACK, "`<code>` stays", ""], title="MD")
    text = nb.to_markdown(book, nb.results(book))
    assert text.startswith("# MD\n")
    assert "<script>" not in text and "<img" not in text and "![x]" not in text
    assert "!\\[x](http://127.0.0.1:1/x.png)" in text and "`<code>` stays" in text
    for step in book.steps:
        assert f"<http://localhost:8501/{step.kind}?{step.link}>" in text
    assert text.count("|---|---|") == 3
    missing = nb.to_markdown(book, [None, None, None])
    assert missing.count("Not computed here") == 3


def test_cli_exports_a_stored_notebook(tiny_gpt2_dir, tmp_path, capsys):
    book = nb.build(tiny_links(tiny_gpt2_dir)[:2], notes=["n"], title="CLI")
    source = tmp_path / "book.json"
    source.write_text(book.to_json())
    assert main(["notebook", "add", str(source)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == book.reference
    html, md = tmp_path / "out.html", tmp_path / "out.md"
    assert main(["notebook", "export", book.reference, "--html", str(html), "--md", str(md)]) == 0
    assert html.read_text().count('class="step"') == 2 and "## 2." in md.read_text()
    assert main(["notebook", "export", "sha256:" + "1" * 64, "--md", str(md)]) == 2
    assert "is not in this store" in capsys.readouterr().err
    assert main(["notebook", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)["notebooks"]
    assert {"ioi-walkthrough", book.reference} <= {row["reference"] for row in listed}


def test_exporting_a_cached_notebook_imports_no_torch(tiny_gpt2_dir, tmp_path):
    book = nb.build(tiny_links(tiny_gpt2_dir)[:1], title="light")
    nb.results(book)  # computed and stored here
    nb.save(book)
    seen = fresh_python(f"""
        import json, sys
        from analyses import notebook as nb
        book = nb.resolve({book.reference!r})
        results = nb.results(book, compute_missing=False)
        html = nb.to_html(book, results)
        print(json.dumps({{"cached": [r is not None for r in results], "figure": 'id="figure-1"' in html,
                          "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """, ANALYSES_CACHE=os.environ["ANALYSES_CACHE"],
        ANALYSES_MODEL_ROOTS=os.environ.get("ANALYSES_MODEL_ROOTS", ""))
    assert seen == {"cached": [True], "figure": True, "loaded": []}


# --------------------------------------------------------------------------- the shipped walkthrough
def test_the_ioi_walkthrough_ships_and_every_step_is_a_valid_link_to_a_page():
    from app.routes import PAGES

    assert "ioi-walkthrough" in shipped_names()
    book = nb.resolve("ioi-walkthrough")
    assert book == shipped("ioi-walkthrough") and len(book.steps) >= 5
    for step in book.steps:
        spec = AnalysisSpec.from_query(step.link)  # parses: a valid spec
        assert spec.to_query() == step.link and spec.kind in PAGES and step.title and step.note
    assert {s.kind for s in book.steps} >= {"activation_patching", "dla", "attention", "steering", "circuit"}
    readme = (REPO / "README.md").read_text()
    assert "/notebook?notebook=ioi-walkthrough" in readme


@pytest.mark.skipif(not (REPO / "data/models/tiny-circuits/config.json").is_file(),
                    reason="the embedded model is not trained here")
def test_the_walkthrough_attention_step_reproduces_its_note():
    """The cheap step (one prompt): computed from its link, L0H0's last position looks most at
    the second mention of the subject, as the note says."""
    book = nb.resolve("ioi-walkthrough")
    step = next(s for s in book.steps if s.kind == "attention")
    result = compute(step.spec)
    patterns = result.tables["patterns"]
    head = patterns[(patterns["layer"] == 0) & (patterns["head"] == 0)]
    last = head[head["query_pos"] == head["query_pos"].max()]
    tokens = result.meta["tokens"]
    looked_at = int(last.loc[last["weight"].idxmax(), "key_pos"])
    assert tokens[looked_at] == " Carl" and tokens.count(" Carl") == 2
    assert looked_at == max(i for i, t in enumerate(tokens) if t == " Carl"), (tokens, looked_at)
    assert "second mention" in step.note
    assert nb.to_markdown(book.__class__(title="one", steps=(step,)), [result]).count("|---|---|") == 1



def test_key_numbers_of_a_set_are_the_largest_estimates_with_their_intervals():
    import pandas as pd

    from analyses import Result

    spec = AnalysisSpec.from_query("kind=activation_patching&dataset=ioi&granularity=head_out")
    heads = [(layer, head) for layer in range(3) for head in range(4)]
    summary = pd.DataFrame({"granularity": "head_out", "layer": [layer for layer, _ in heads],
                            "position": -1, "head": [h for _, h in heads],
                            "mean": [0.991 if (layer, h) == (0, 0) else 0.01 * h for layer, h in heads],
                            "sem": 0.01, "ci_low": 0.957, "ci_high": 1.026, "n": 200, "interval": "paired delta"})
    result = Result(spec=spec, tables={"effects_summary": summary})
    numbers = nb.key_numbers(result)
    assert numbers[0] == ("granularity head_out, layer 0, head 0", "0.991 [0.957, 1.03], n = 200")
    assert len(numbers) == 6  # the largest six of twelve
