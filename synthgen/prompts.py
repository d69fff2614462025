"""Prompt templates: Jinja2 files kept in the top-level `prompts/` folder.

Where they are found: a wheel carries them inside the package as `synthgen/prompts_data/` (pyproject's
force-include); a source checkout or an editable install reads the top-level `prompts/` folder beside the
package. A force-include alone breaks editable installs, hence the two places, both covered by tests.
Every manifest records a template's content hash, so a changed prompt is visible in the run's records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from synthgen.errors import UserError


def template_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "prompts_data", here.parent / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"prompt templates not found beside {here}: the installation is incomplete")


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    sha256: str
    _compiled: jinja2.Template

    def __reduce__(self):
        # the compiled Jinja2 template does not pickle, and its text rebuilds it (executors send work to workers)
        return (_from_text, (self.name, self.text))

    def render(self, **values: object) -> str:
        try:
            return self._compiled.render(**values)
        except jinja2.UndefinedError as exc:
            raise UserError(f"template {self.name}: {exc.message}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise UserError(f"template {self.name}: not allowed in a prompt template ({exc})") from None


# Sandboxed: a template (a user's --prompt or --judge-prompt, perhaps from someone else) reads the values it is
# given and cannot reach Python internals (`__class__`, `__globals__`, ...) through them.
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def load_template(name_or_path: str | Path) -> Template:
    """A bundled template by file name (e.g. "generate.j2"), or a user's template by path."""
    path = Path(name_or_path)
    if not path.exists():
        bundled = template_dir() / str(name_or_path)
        if not bundled.exists():
            raise UserError(f"prompt template not found: {name_or_path}")
        path = bundled
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read prompt template {path}: {exc}") from None
    try:
        compiled = _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: template syntax error ({exc.message})") from None
    return Template(path.name, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), compiled)


def _from_text(name: str, text: str) -> Template:
    return Template(name, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), _ENV.from_string(text))
