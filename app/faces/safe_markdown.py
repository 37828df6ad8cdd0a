"""The page's one Markdown: whatever it shows (a reply, a summary, a title, an import note, an
error line: text stored or written by a model) passes `remote_images_as_links` first, so only
images the app itself serves (`data:`, its own files) load.

A function, not a `gr.Markdown` subclass: Gradio writes a `.pyi` stub beside the source of every
component class it sees defined."""

from __future__ import annotations

import gradio as gr

from app.faces.web_guard import remote_images_as_links


def safe_markdown(value="", **kwargs) -> gr.Markdown:
    """A `gr.Markdown` whose every value, the first one included, is rewritten before it is sent."""
    markdown = gr.Markdown(_rewritten(value), **kwargs)
    as_sent = markdown.postprocess
    markdown.postprocess = lambda new_value: as_sent(_rewritten(new_value))
    return markdown


def _rewritten(value):
    return remote_images_as_links(value) if isinstance(value, str) else value
