"""The hand-written html.parser reader synthgen used before synthgen/html.py: the "before" arm of bench_html.py."""

import html.parser


class _HTMLText(html.parser.HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer"}  # not the page's text
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
             "article", "header", "footer", "main", "aside", "nav", "pre", "blockquote", "dd", "dt", "hr", "figure",
             "figcaption", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self.h1: list[str] = []
        self._skip = 0
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self._skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n")
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n\n")
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        current = self._stack[-1] if self._stack else ""
        if current == "title":
            self.title.append(data)
        elif not self._skip:
            if "h1" in self._stack:
                self.h1.append(data)
            self.parts.append(data)


def html_text(text: str) -> tuple[str, str]:
    """Visible text (scripts, styles, navigation and the head dropped), block elements as paragraphs; title from <title>."""
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    title = " ".join("".join(parser.title).split()) or " ".join("".join(parser.h1).split())
    paragraphs = ("".join(parser.parts)).split("\n\n")
    return title, "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
