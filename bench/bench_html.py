"""HTML to text: the candidate libraries side by side on real pages (a Sphinx page, an mdBook page, the example
corpus) and on the pages that broke the hand-written parser (an HTML5 page that omits </head>, a page framed by
navigation, header, footer and aside).

For each page: sentences of the page's own text that must come out (recall), boilerplate phrases that should not
(navigation, footers), the title, and the time per page. Prints one table; `--json PATH` writes the figures.

    pip install inscriptis trafilatura   # the two arms that are not the project's dependencies
    .venv/bin/python bench/bench_html.py --json bench/results/html.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUST_BOOK = Path("/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/book/ch04-01-what-is-ownership.html")
SPHINX_PAGE = Path(f"{sys.base_prefix}/lib/python{sys.version_info.major}.{sys.version_info.minor}/idlelib/help.html")

NO_HEAD_END = """<!doctype html>
<html lang=en>
<head>
<meta charset=utf-8>
<title>Cold retard</title>
<link rel=stylesheet href=site.css>
<body>
<h1>Cold retard</h1>
<p>Proofing shaped loaves in the fridge overnight slows the yeast while the bacteria keep making acid.
<p>A cold loaf is easier to score, and the crumb comes out more open.
"""

FRAMED = """<!DOCTYPE html><html><head><title>Swarm control - Bee Notes</title><script>var x = 1;</script>
<style>body { color: red }</style></head><body>
<header><a href="/">Bee Notes</a> <span>The beekeeper's notebook</span></header>
<nav><ul><li><a href="/">Home</a></li><li><a href="/archive">Archive of all posts</a></li>
<li><a href="/about">About the author</a></li></ul></nav>
<main><article><h1>Swarm control</h1>
<p>A colony preparing to swarm builds queen cells along the bottom edge of the frames.</p>
<p>Splitting the colony before the cells are capped removes the urge to swarm.</p>
<table><tr><td>Month</td><td>Risk</td></tr><tr><td>May</td><td>high</td></tr></table>
</article></main>
<aside><h3>Related posts</h3><ul><li><a href="/varroa">Counting varroa mites</a></li></ul></aside>
<footer>Copyright 2024 Bee Notes. All rights reserved. Subscribe to the newsletter.</footer>
</body></html>"""


def pages() -> list[tuple[str, str, list[str], list[str], str]]:
    """(name, html, sentences that must come out, boilerplate that should not, expected title)"""
    out = [
        ("html5 without </head>", NO_HEAD_END, ["Proofing shaped loaves in the fridge overnight", "A cold loaf is easier to score"],
         [], "Cold retard"),
        ("header/nav/aside/footer", FRAMED, ["builds queen cells along the bottom edge", "Splitting the colony before", "May"],
         ["Archive of all posts", "About the author", "Counting varroa mites", "All rights reserved"], "Swarm control - Bee Notes"),
        ("example corpus: winter.html", (REPO / "examples/corpus/beekeeping/winter.html").read_text(),
         ["Honey bees do not hibernate", "Fit a mouse guard over the entrance"], [], "Preparing a hive for winter"),
    ]
    if SPHINX_PAGE.exists():
        out.append(("Sphinx page (Python docs, IDLE)", SPHINX_PAGE.read_text(),
                    ["IDLE is Python’s Integrated Development and Learning Environment", "Shell window"],
                    ["Theme Auto Light Dark", "Previous topic", "Python Software Foundation is a non-profit", "Created using Sphinx"],
                    "IDLE"))
    if RUST_BOOK.exists():
        out.append(("mdBook page (The Rust Book)", RUST_BOOK.read_text(),
                    ["Ownership is a set of rules that govern how a Rust program manages memory", "The Stack and the Heap"],
                    ["Press ← or → to navigate between chapters", "Keyboard shortcuts"], "What is Ownership?"))
    return out


def handwritten(html: str) -> tuple[str, str]:
    """The parser this project had before (html.parser, skipping head/nav/footer)."""
    from bench_html_old import html_text

    return html_text(html)


def current(html: str) -> tuple[str, str]:
    from synthgen.html import html_text

    return html_text(html)


def inscriptis_text(html: str) -> tuple[str, str]:
    from inscriptis import get_text
    from lxml import html as lhtml

    tree = lhtml.fromstring(html)
    title = (tree.findtext(".//title") or "").strip()
    return title, get_text(html)


def trafilatura_text(html: str) -> tuple[str, str]:
    import trafilatura

    text = trafilatura.extract(html, include_tables=True, include_comments=False, favor_recall=True) or ""
    meta = trafilatura.extract_metadata(html)
    return (meta.title if meta and meta.title else ""), text


def selectolax_plain(html: str) -> tuple[str, str]:
    """selectolax with only scripts and styles removed: the parser, no boilerplate rules."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    title = tree.css_first("title")
    body = tree.body
    return (title.text(strip=True) if title else ""), (body.text(separator=" ") if body else "")


ARMS = {"hand-written (before)": handwritten, "selectolax + rules (chosen)": current, "selectolax, no rules": selectolax_plain,
        "inscriptis": inscriptis_text, "trafilatura": trafilatura_text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    rows = []
    for name, html, wanted, boiler, title in pages():
        for arm, fn in ARMS.items():
            fn(html)  # warm: imports
            started = time.perf_counter()
            for _ in range(5):
                got_title, text = fn(html)
            ms = (time.perf_counter() - started) / 5 * 1000
            flat = " ".join(text.split())
            rows.append({"page": name, "arm": arm, "recall": sum(w in flat for w in wanted) / len(wanted),
                         "boilerplate_left": sum(b in flat for b in boiler), "boilerplate": len(boiler),
                         "title_ok": title.lower() in got_title.lower() if got_title else False, "ms": round(ms, 2),
                         "words": len(flat.split())})
    print(f"{'page':34} {'arm':28} {'recall':>6} {'boiler':>7} {'title':>6} {'words':>6} {'ms':>8}")
    for r in rows:
        print(f"{r['page']:34} {r['arm']:28} {r['recall']:6.2f} {r['boilerplate_left']:3}/{r['boilerplate']:<3} "
              f"{str(r['title_ok']):>6} {r['words']:6} {r['ms']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
