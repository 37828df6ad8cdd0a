"""Settings' "API" section: whether the OpenAI-compatible API is on, its base URL, examples to copy."""

from __future__ import annotations

import gradio as gr


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
    with gr.Accordion("API (OpenAI-compatible)", open=False, elem_id="api-section"):
        if base_url is None:
            gr.Markdown("The API is off. Start the app with `nemo-chat ui --api` to serve it at `/v1` on this "
                        "page's port, or run `nemo-chat serve` for the API alone.", elem_id="api-state")
            return
        python, curl = api_examples(base_url, model)
        gr.Markdown(f"The API is on: base URL `{base_url}` (the same engine as this page).", elem_id="api-state")
        gr.Code(python, language="python", label="Python (openai package)", interactive=False, elem_id="api-python")
        gr.Code(curl, language="shell", label="curl", interactive=False, elem_id="api-curl")
