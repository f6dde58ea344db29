"""Load and validate prompt templates.

A template is a YAML file (built-ins live in the repository's top-level `prompts/` folder):

    name: notellm2
    chat: auto            # auto: wrap with the tokenizer's chat template when it has one; never
    system: null          # optional system message (chat mode only)
    requires: [image]     # optional: items lacking these are rejected (image, text)
    user:                 # segments, concatenated in order
      - 'Item content: {'
      - {if: image, text: '"image": {{image}}, ', else: ''}
      - '{{fields}}}.'
    answer_prefix: '"'    # appended after the (opened) assistant turn / the plain text

Markers inside segment text: `{{image}}` (the backbone's image placeholder, once per image),
`{{fields}}` (all text fields as `"name": "value"` pairs), `{{field:NAME}}` (one field's value),
`{{slot:CHANNEL}}` (an extra output channel taken at the token before this point, e.g. mICL's
`visual`). The template's identity in manifests is its name plus the SHA-256 of its parsed content.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllmrec.errors import MllmrecError

MARKER = re.compile(r"\{\{(image|fields|field:[^{}]+|slot:[a-z_]+)\}\}")
CONDITIONS = ("image", "text")
_KEYS = {"name", "description", "chat", "system", "requires", "user", "answer_prefix"}


class PromptError(MllmrecError, ValueError):
    """A template is missing, malformed or cannot render an item."""


class TemplateError(PromptError):
    """The template (or the model's chat template) cannot work for any item: stop the run rather
    than reject every item one by one."""


@dataclass(frozen=True)
class Segment:
    text: str
    when: str | None = None  # render `text` only if the item has this (image/text) ...
    otherwise: str = ""  # ... else this


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    description: str
    chat: str
    system: str | None
    requires: tuple[str, ...]
    segments: tuple[Segment, ...]
    answer_prefix: str
    sha256: str
    source: str

    @property
    def uses_images(self) -> bool:
        return any("{{image}}" in s.text or "{{image}}" in s.otherwise for s in self.segments)

    @property
    def uses_text(self) -> bool:
        return any(
            m.group(1) == "fields" or m.group(1).startswith("field:")
            for s in self.segments
            for m in MARKER.finditer(s.text + s.otherwise)
        )

    @property
    def slot_channels(self) -> tuple[str, ...]:
        found = []
        for s in self.segments:
            for m in MARKER.finditer(s.text + s.otherwise):
                if m.group(1).startswith("slot:") and m.group(1)[5:] not in found:
                    found.append(m.group(1)[5:])
        return tuple(found)

    @property
    def channels(self) -> tuple[str, ...]:
        return ("mm", *self.slot_channels)

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def builtin_dir() -> Path:
    """The built-in templates: `builtin` links to the top-level prompts/ folder in a checkout and is
    a copy of it inside a wheel."""
    return Path(__file__).parent / "builtin"


def list_templates() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def load_template(name_or_path: str | Path) -> PromptTemplate:
    """A built-in template by name, or a YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = builtin_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise PromptError(
                f"unknown prompt template {str(name_or_path)!r}: not a YAML file and not a built-in "
                f"(built-ins: {', '.join(list_templates())})"
            )
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PromptError(f"{path}: not valid YAML: {e}") from e
    return parse_template(data, source=str(path))


def parse_template(data: Any, source: str = "<dict>") -> PromptTemplate:
    if not isinstance(data, dict):
        raise PromptError(f"{source}: a template must be a mapping")
    unknown = set(data) - _KEYS
    if unknown:
        raise PromptError(f"{source}: unknown template key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    if not data.get("name") or not isinstance(data.get("user"), list) or not data["user"]:
        raise PromptError(f"{source}: a template needs a `name` and a non-empty `user` list of segments")
    chat = str(data.get("chat", "auto"))
    if chat not in ("auto", "never"):
        raise PromptError(f"{source}: chat must be 'auto' or 'never', got {chat!r}")
    raw_requires = data.get("requires") or []
    if not isinstance(raw_requires, list) or not all(isinstance(r, str) for r in raw_requires):
        raise PromptError(
            f"{source}: requires may list only {CONDITIONS}, as a YAML list; got {raw_requires!r}"
        )
    requires = tuple(raw_requires)
    if set(requires) - set(CONDITIONS):
        raise PromptError(f"{source}: requires may list only {CONDITIONS}, got {list(requires)}")
    segments = tuple(_segment(s, source) for s in data["user"])
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return PromptTemplate(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        chat=chat,
        system=data.get("system"),
        requires=requires,
        segments=segments,
        answer_prefix=str(data.get("answer_prefix", "")),
        sha256=hashlib.sha256(canonical).hexdigest(),
        source=source,
    )


def _segment(raw: Any, source: str) -> Segment:
    if isinstance(raw, str):
        seg = Segment(text=raw)
    elif isinstance(raw, dict) and set(raw) <= {"if", "text", "else"} and "text" in raw:
        when = raw.get("if")
        if when is not None and when not in CONDITIONS:
            raise PromptError(f"{source}: segment condition must be one of {CONDITIONS}, got {when!r}")
        seg = Segment(text=str(raw["text"]), when=when, otherwise=str(raw.get("else", "")))
    else:
        raise PromptError(f"{source}: a segment is a string or {{if, text, else}}, got {raw!r}")
    for part in (seg.text, seg.otherwise):
        # Anything still shaped like {{...}} after removing the real markers is a typo ({{ fields }},
        # {{Image}}) that would otherwise reach the prompt verbatim.
        stray = re.search(r"\{\{\s*[A-Za-z_][^{}]*\}\}", MARKER.sub("", part))
        if stray:
            raise PromptError(
                f"{source}: unknown marker {stray.group(0)!r} in segment {part!r}; markers are "
                "{{image}}, {{fields}}, {{field:NAME}}, {{slot:NAME}}"
            )
    return seg
