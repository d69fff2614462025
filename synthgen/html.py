"""HTML to a title and paragraphs of visible text, through selectolax (the lexbor HTML5 parser).

An HTML5 parser builds the tree browsers build, so what the standard lets a page omit (`</head>`, `<body>`, `</p>`)
loses nothing; the hand-written html.parser reader this replaces dropped the whole body of a page without
`</head>`. The page's own text is kept and its frame left out: scripts, styles, navigation, header and footer
regions, asides and forms go, and a page that marks its main content (`<main>`, `role="main"`, `<article>`) is read
from there alone. Chosen over inscriptis (keeps navigation and footers) and trafilatura (main-content heuristics
that also cut short pages' text, and a dozen dependencies) by bench/bench_html.py (README, "Libraries").
"""

from __future__ import annotations

FRAME = ("script, style, noscript, template, svg, iframe, object, nav, header, footer, aside, form, button, dialog, "
         "[role=navigation], [role=banner], [role=contentinfo], [role=search], [role=complementary], [hidden], "
         "[aria-hidden=true]")
MAIN = ("main", "[role=main]", "article")
BLOCK = {"address", "article", "blockquote", "body", "br", "caption", "dd", "details", "div", "dl", "dt", "figcaption",
         "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "main", "ol", "p", "pre", "section", "summary",
         "table", "tbody", "thead", "tfoot", "tr", "ul"}
CELL = {"td", "th"}


def html_text(text: str) -> tuple[str, str]:
    """(title, body): the title from <title> (else the first <h1>), the body's blocks as paragraphs."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    root = next((node for node in (tree.css_first(s) for s in MAIN) if node is not None), None) or tree.body
    if root is None:
        return title, ""
    for node in root.css(FRAME):
        node.decompose()
    parts: list[str] = []
    stack = [(root, False)]  # (node, closing): an explicit stack, since a page may nest deeper than recursion goes
    while stack:
        node, closing = stack.pop()
        if closing:
            parts.append("\n\n" if node.tag in BLOCK else " ")
            continue
        if node.tag == "-text":
            parts.append(node.text_content or "")
            continue
        if node.tag in BLOCK or node.tag in CELL:
            parts.append("\n\n" if node.tag in BLOCK else " ")
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    paragraphs = "".join(parts).split("\n\n")
    return title, "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
