"""Settings' "API" section: whether the OpenAI-compatible API is on, its base URL, examples to copy."""

from __future__ import annotations

import gradio as gr

from app.faces.i18n import in_page_language, say, t
from app.faces.safe_markdown import safe_markdown


def api_examples(base_url: str, model: str) -> tuple[str, str]:
    """A Python (`openai` package) and a curl example against `base_url`."""
    python = (f'from openai import OpenAI\n\nclient = OpenAI(base_url="{base_url}", api_key="unused")\n'
              f'reply = client.chat.completions.create(\n    model="{model}",\n'
              '    messages=[{"role": "user", "content": "Bonjour !"}],\n)\nprint(reply.choices[0].message.content)\n')
    curl = (f"curl {base_url}/chat/completions -H 'Content-Type: application/json' \\\n"
            f"  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Bonjour !\"}}]}}'\n")
    return python, curl


def api_section(base_url: str | None, model: str) -> None:
    """Inside the current Blocks: the API's state and, when it is on, examples to copy."""
    with gr.Accordion(t("api_title"), open=False, elem_id="api-section"):
        if base_url is None:
            safe_markdown(t("api_off"), elem_id="api-state")
            return
        python, curl = api_examples(base_url, model)
        state = safe_markdown("", elem_id="api-state")  # holds the URL: written on load, in the page's language
        gr.Code(python, language="python", label=t("api_python"), interactive=False, elem_id="api-python")
        gr.Code(curl, language="shell", label=t("api_curl"), interactive=False, elem_id="api-curl")

    def opened(request: gr.Request):
        return say(request, "api_on", url=base_url)

    in_page_language(opened, None, state)
