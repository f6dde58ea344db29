"""Prompt templates: loading (YAML files in the top-level prompts/ folder) and rendering."""

from __future__ import annotations

from mllmrec.prompts.render import render
from mllmrec.prompts.templates import (
    PromptError,
    PromptTemplate,
    TemplateError,
    list_templates,
    load_template,
)

__all__ = ["PromptError", "PromptTemplate", "TemplateError", "list_templates", "load_template", "render"]
