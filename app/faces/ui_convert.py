"""The "Convert a checkpoint" panel of the Settings tab: a thin face over convert_gguf.convert."""

from pathlib import Path

import gradio as gr

from app.base.config import models_dir
from app.base.errors import UserError
from app.convert_gguf import OUTTYPES, convert
from app.faces.i18n import say, t
from app.faces.safe_markdown import safe_markdown


def convert_panel(services, on_done=None) -> None:
    """Folder in, GGUF out (into the models folder by default), with progress and Stop."""

    def run(folder: str, outtype: str, output: str, request: gr.Request, bar=gr.Progress()):
        folder = (folder or "").strip()
        if not folder:
            return say(request, "convert_folder_missing")
        target = Path(output.strip()) if output and output.strip() else \
            models_dir() / f"{Path(folder).name}-{outtype}.gguf"
        job = services.jobs.start(request.session_hash, "convert",
                                  lambda progress, cancel: convert(folder, target, outtype, progress=progress, cancel=cancel))
        try:
            for _ in job.watch():
                if job.progress is not None:
                    bar(job.progress.fraction, desc=job.progress.what or say(request, "convert_converting"))
            outcome = job.result()
        except UserError as exc:
            return say(request, "common_warning", message=exc)
        finally:
            job.stop()
        if outcome.stopped:
            return say(request, "convert_stopped")
        result = outcome.value
        return say(request, "convert_done", path=result.path, outtype=result.outtype,
                   size=f"{result.size_bytes / 1e9:.2f}", seconds=f"{result.seconds:.0f}")

    def stop(request: gr.Request):
        services.jobs.stop(request.session_hash, "convert")

    with gr.Accordion(t("convert_title"), open=False):
        safe_markdown(t("convert_help"))
        folder = gr.Textbox(label=t("convert_folder"), elem_id="convert-folder")
        with gr.Row():
            outtype = gr.Dropdown(list(OUTTYPES), value="q8_0", label=t("convert_outtype"), elem_id="convert-outtype")
            output = gr.Textbox(label=t("convert_output"), placeholder=str(models_dir()), elem_id="convert-output")
        with gr.Row():
            start = gr.Button(t("convert_start"), variant="primary", elem_id="convert-start")
            stop_btn = gr.Button(t("common_stop"), variant="stop", elem_id="convert-stop")
        status = safe_markdown("", elem_id="convert-status")
    event = start.click(run, [folder, outtype, output], status, concurrency_id="convert", concurrency_limit=1)
    if on_done:
        event.then(on_done[0], None, on_done[1])
    stop_btn.click(stop, None, None, concurrency_limit=None)
