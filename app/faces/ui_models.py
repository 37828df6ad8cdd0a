"""The Settings tab's model part: the GPU plan next to the chosen model, what each context size
costs, GPU offload auto or manual, and "Download a model" with progress and Stop."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from app.base.config import save_settings
from app.base.errors import UserError
from app.engine.gpu_plan import CONTEXT_SIZES, context_costs, context_label, detected_gpu, model_memory, plan_for
from app.base.jobs import Progress
from app.engine.catalog import CATALOG, available_models, cached_path, model_rows, resolve_model
from app.faces.i18n import as_data, in_page_language, language_of, say, t, text, words
from app.faces.safe_markdown import safe_markdown
from app.engine.memory import KV_TYPES, free_memory_bytes

POLL_S = 0.5  # how often the download's progress line is refreshed


def plan_markdown(model: str, n_ctx: int, gpu_mode: str = "auto", kv_type: str = "f16", language: str = "en",
                  parallel: int = 0) -> str:
    """The plan for this model, context and number of sequences (0: as the plan sees fit), the
    largest context that fits, and the cost table."""
    wanted = CATALOG.get((model or "").strip().lower())
    if wanted is not None and cached_path(wanted) is None:
        return text(language, "models_not_downloaded", name=wanted.name, size=f"{wanted.size_bytes / 1e9:.1f}")
    try:
        path = resolve_model(model)
        mem = model_memory(path)
    except UserError as exc:
        return text(language, "common_warning", message=exc)
    try:
        plan = plan_for(path, n_ctx=int(n_ctx), parallel=parallel)
        line = text(language, "models_plan", name=path.name, explanation=plan.explanation)
    except UserError as exc:
        plan, line = None, text(language, "common_warning", message=exc)
    if gpu_mode != "auto":
        line += " " + text(language, "models_manual", kv=kv_type)
    lines = [line, *(f"- {words(language, note)}" for note in (plan.notes if plan else ()))]
    try:
        best = plan_for(path)
        lines.append("\n" + text(language, "models_largest_context", context=context_label(best.n_ctx), kv=best.type_k))
    except UserError as exc:
        lines.append("\n" + text(language, "common_warning", message=exc))
    lines.append(f"\n| {text(language, 'models_col_context')} | " + " | ".join(f"{kv} K/V" for kv in KV_TYPES) + " |")
    lines.append("|---|" + "---|" * len(KV_TYPES))
    for size, costs in context_costs(mem):
        lines.append(f"| {context_label(size)} | "
                     + " | ".join(as_data(language, f"{costs[kv] / 2**30:.1f} GiB") for kv in KV_TYPES) + " |")
    return "\n".join(lines)


def context_choices(model: str, current: int | None = None) -> list[tuple[str, int]]:
    """Context sizes labelled with what their K/V cache costs for this model; `current` (the
    Context field's size) among them when it is none of the usual ones."""
    sizes = sorted({*CONTEXT_SIZES, current}) if current else CONTEXT_SIZES
    try:
        costs = dict(context_costs(model_memory(resolve_model(model))))
    except UserError:
        costs = {}
    return [(context_label(size) + (" · K/V " + ", ".join(f"{costs[size][kv] / 2**30:.1f} GiB {kv}" for kv in KV_TYPES)
                                    if size in costs else ""), size) for size in sizes]


def download_choices(language: str = "en") -> list[tuple[str, str]]:
    """(label, catalog name) for every NeMo quant: size, recommended, downloaded."""
    rows = model_rows(detected_gpu(), free_memory_bytes())
    return [(" · ".join([r["name"], f"{r['size_bytes'] / 1e9:.1f} GB",
                         *([text(language, "models_recommended")] if r["recommended"] else []),
                         *([text(language, "models_downloaded")] if r["path"] else [])]), r["name"])
            for r in rows if r["name"].startswith("nemo-")]


def progress_line(p: Progress, language: str = "en") -> str:
    return text(language, "models_download_progress", what=p.what, done=f"{p.done / 1e9:.2f}",
                total=f"{p.total / 1e9:.2f}", percent=f"{p.fraction:.0%}")


def model_section(services, model_name, n_ctx) -> None:
    """Build the section inside the Settings tab; `model_name` and `n_ctx` are the tab's inputs."""
    from app.engine.downloads import UI_ADVICE, download

    s = services.settings
    with gr.Accordion(t("models_plan_title"), open=True):
        plan_md = safe_markdown("", elem_id="gpu-plan")  # written on load, in the page's language
        with gr.Row():
            preset = gr.Dropdown(context_choices(s.model, s.n_ctx), value=s.n_ctx, label=t("models_context_presets"),
                                 elem_id="context-preset")
            gpu_mode = gr.Radio([(t("models_gpu_auto"), "auto"), (t("models_gpu_manual"), "manual")], value=s.gpu,
                                label=t("models_gpu_mode"), elem_id="gpu-mode")
            kv_type = gr.Dropdown(list(KV_TYPES), value=s.kv_type, label=t("models_kv_type"), elem_id="kv-type")
    with gr.Accordion(t("models_download_title"), open=False):
        choice = gr.Dropdown(download_choices(), label=t("models_download_choice"), elem_id="download-choice")
        with gr.Row():
            start_btn = gr.Button(t("models_download"), variant="primary", elem_id="download")
            stop_btn = gr.Button(t("common_stop"), variant="stop", elem_id="download-stop")
        status = safe_markdown("", elem_id="download-status")

    def show_plan(model, ctx, request: gr.Request):
        return plan_markdown(model or "", ctx or s.n_ctx, services.settings.gpu, services.settings.kv_type,
                             language_of(request), services.settings.parallel)

    def presets(model, ctx):
        """The presets, showing the Context field's size."""
        size = int(ctx) if ctx else None
        return gr.update(choices=context_choices(model or "", size), value=size)

    def page_words(model, ctx, request: gr.Request):
        """The plan (of the fields as they are) and the models to download, in the page's language."""
        return show_plan(model, ctx, request), gr.update(choices=download_choices(language_of(request)))

    def opened(request: gr.Request):
        """On load, the plan of the settings in use (the fields show them once the page has loaded)."""
        settings = services.settings
        return *page_words(settings.model, settings.n_ctx, request), presets(settings.model, settings.n_ctx)

    def set_mode(model, ctx, mode, kv, request: gr.Request):
        services.settings = replace(services.settings, gpu=mode, kv_type=kv)
        save_settings(services.settings)
        return show_plan(model, ctx, request)

    def run_download(name, request: gr.Request):
        language = language_of(request)
        if not name:
            yield say(request, "models_choose_first"), gr.skip(), gr.skip()
            return
        job = services.jobs.start(request.session_hash, "download",
                                  lambda progress, cancel: download(name, progress, cancel, UI_ADVICE))
        try:
            for _ in job.watch(POLL_S):
                if job.progress is not None:
                    yield progress_line(job.progress, language), gr.skip(), gr.skip()
            outcome = job.result()
        except UserError as exc:
            yield say(request, "common_warning", message=exc), gr.skip(), gr.skip()
            return
        finally:
            job.stop()
        if outcome.stopped:
            yield say(request, "models_download_stopped"), gr.skip(), gr.skip()
        else:
            yield (say(request, "models_download_ready", name=name, path=outcome.value),
                   gr.update(choices=available_models(), value=name),
                   gr.update(choices=download_choices(language), value=name))

    def context_typed(model, ctx, request: gr.Request):
        return show_plan(model, ctx, request), presets(model, ctx)

    def preset_chosen(size):  # left without a choice: the Context field keeps its size
        return size if size else gr.skip()

    gr.on(None, opened, None, [plan_md, choice, preset])  # on load: in the page's language
    in_page_language(page_words, [model_name, n_ctx], [plan_md, choice], on_load=False)
    model_name.change(context_typed, [model_name, n_ctx], [plan_md, preset])
    gr.on([n_ctx.blur, n_ctx.submit], context_typed, [model_name, n_ctx], [plan_md, preset])  # not while typing
    preset.input(preset_chosen, preset, n_ctx).then(show_plan, [model_name, n_ctx], plan_md)
    for control in (gpu_mode, kv_type):
        control.input(set_mode, [model_name, n_ctx, gpu_mode, kv_type], plan_md)
    start_btn.click(run_download, choice, [status, model_name, choice], concurrency_id="download", concurrency_limit=1)
    def stop_download(request: gr.Request):
        services.jobs.stop(request.session_hash, "download")

    stop_btn.click(stop_download, None, None, concurrency_limit=None)
