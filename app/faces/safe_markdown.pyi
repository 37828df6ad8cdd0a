"""The page's one Markdown component: whatever it shows (a reply, a summary, a title, an import
note, an error line: text stored or written by a model) passes `remote_images_as_links` first, so
only images the app itself serves (`data:`, its own files) load."""

from __future__ import annotations

import gradio as gr

from app.faces.web_guard import remote_images_as_links

from gradio.events import Dependency

class SafeMarkdown(gr.Markdown):
    """`gr.Markdown` whose every value, the first one included, is rewritten before it is sent."""

    is_template = True  # drawn in the browser by Gradio's own Markdown

    def postprocess(self, value):
        return super().postprocess(remote_images_as_links(value) if isinstance(value, str) else value)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component