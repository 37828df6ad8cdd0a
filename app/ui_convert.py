"""The "Convert a checkpoint" panel of the Settings tab: a thin face over convert_gguf.convert."""

from pathlib import Path

import gradio as gr

from .config import models_dir
from .convert_gguf import OUTTYPES, convert
from .errors import Cancelled, UserError
from .jobs import CancelToken, Progress


def convert_panel(on_done=None) -> None:
    """Folder in, GGUF out (into the models folder by default), with progress and Stop."""
    cancels: dict[str, CancelToken] = {}

    def run(folder: str, outtype: str, output: str, request: gr.Request, progress=gr.Progress()):
        token = cancels[request.session_hash] = CancelToken()
        folder = (folder or "").strip()
        if not folder:
            return "⚠️ Give the checkpoint folder first."
        target = Path(output.strip()) if output and output.strip() else \
            models_dir() / f"{Path(folder).name}-{outtype}.gguf"

        def report(p: Progress) -> None:
            progress(p.fraction, desc=p.label or "converting")

        try:
            result = convert(folder, target, outtype, progress=report, cancel=token)
        except UserError as exc:
            return f"⚠️ {exc}"
        except Cancelled:
            return "Stopped; nothing was written."
        return (f"✅ Wrote `{result.path}` ({result.outtype}, {result.size_bytes / 1e9:.2f} GB, "
                f"{result.seconds:.0f} s). Choose it as the model above.")

    def stop(request: gr.Request):
        token = cancels.get(request.session_hash)
        if token:
            token.cancel()

    with gr.Accordion("Convert a checkpoint to GGUF", open=False):
        gr.Markdown("A Hugging Face folder (`config.json` + `*.safetensors`) or a Mistral-native folder "
                    "(`params.json` + `consolidated.safetensors`) of Mistral NeMo; BF16, F16, F32 or FP8 weights.")
        folder = gr.Textbox(label="Checkpoint folder", elem_id="convert-folder")
        with gr.Row():
            outtype = gr.Dropdown(list(OUTTYPES), value="q8_0", label="Output type (q8_0 is nearest to NeMo's FP8)")
            output = gr.Textbox(label=f"Output file (default: in {models_dir()})", elem_id="convert-output")
        with gr.Row():
            start = gr.Button("Convert", variant="primary", elem_id="convert-start")
            stop_btn = gr.Button("Stop", variant="stop")
        status = gr.Markdown("", elem_id="convert-status")
    event = start.click(run, [folder, outtype, output], status, concurrency_id="convert", concurrency_limit=1)
    if on_done:
        event.then(on_done[0], None, on_done[1])
    stop_btn.click(stop, None, None, concurrency_limit=None)
