"""The "Convert a checkpoint" panel of the Settings tab: a thin face over convert_gguf.convert."""

from pathlib import Path

import gradio as gr

from app.base.config import models_dir
from app.convert_gguf import OUTTYPES, convert
from app.base.errors import UserError


def convert_panel(services, on_done=None) -> None:
    """Folder in, GGUF out (into the models folder by default), with progress and Stop."""

    def run(folder: str, outtype: str, output: str, request: gr.Request, bar=gr.Progress()):
        folder = (folder or "").strip()
        if not folder:
            return "⚠️ Give the checkpoint folder first."
        target = Path(output.strip()) if output and output.strip() else \
            models_dir() / f"{Path(folder).name}-{outtype}.gguf"
        job = services.jobs.start(request.session_hash, "convert",
                                  lambda progress, cancel: convert(folder, target, outtype, progress=progress, cancel=cancel))
        try:
            for _ in job.watch():
                if job.progress is not None:
                    bar(job.progress.fraction, desc=job.progress.what or "converting")
            outcome = job.result()
        except UserError as exc:
            return f"⚠️ {exc}"
        finally:
            job.stop()
        if outcome.stopped:
            return "Stopped; nothing was written."
        result = outcome.value
        return (f"✅ Wrote `{result.path}` ({result.outtype}, {result.size_bytes / 1e9:.2f} GB, "
                f"{result.seconds:.0f} s). Choose it as the model above.")

    def stop(request: gr.Request):
        services.jobs.stop(request.session_hash, "convert")

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
