"""`nemo-chat mcp`: nemo-chat's long-document tools for other agents, over MCP (the official SDK's
`MCPServer`), on stdio or Streamable HTTP on loopback behind the web guard (Host allow-list, key).

Each long call runs as a job in a thread: its progress goes to the client as MCP progress
notifications, and a cancellation from the client stops the job (its cancel token) before the
call ends. The jobs are the services' own (`services.document_tools`), with their caches.
"""


import asyncio
from typing import Annotated

from app.base.errors import UserError
from app.base.jobs import Job, Progress
from app.services import document_tools
from app.services.root import Services

POLL_S = 0.1  # how often a running job's progress is passed on
INSTRUCTIONS = ("nemo-chat runs Mistral NeMo on this machine. Its tools read whole documents far past the "
                "model's context (summaries, translations) and search the user's saved conversations. "
                "Paths are files on this machine.")


async def run_job(work, report) -> object:
    """Run `work(progress, cancel)` in a thread; `await report(Progress)` as it moves. A cancelled
    call stops the job and waits for it to end before the cancellation goes on. Bad input comes
    back to the client as one line (a tool error)."""
    job = Job(work).start()
    seen: Progress | None = None
    try:
        while not job.finished:
            await asyncio.sleep(POLL_S)
            if job.progress is not None and job.progress != seen:
                seen = job.progress
                await report(seen)
    except asyncio.CancelledError:
        job.stop()
        await asyncio.to_thread(_wait_quietly, job)
        raise
    return _one_line_errors(lambda: job.result().value)


def _one_line_errors(answer):
    """`answer()`, with a UserError turned into the tool error the client reads (the SDK shows
    other exceptions only as "Error executing tool")."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        return answer()
    except UserError as exc:
        raise ToolError(str(exc)) from None


def _wait_quietly(job: Job) -> None:
    try:
        job.result()
    except Exception:  # the call was cancelled: its error, if any, goes nowhere
        pass


def build_server(services: Services):
    """The MCPServer with nemo-chat's tools on `services`."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.types import ToolAnnotations
    from pydantic import Field

    server = MCPServer("nemo-chat", instructions=INSTRUCTIONS)
    reads = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def relay(ctx: Context):
        async def report(progress: Progress) -> None:
            await ctx.report_progress(progress.done, progress.total or None, str(progress.what) or None)
        return report

    @server.tool(annotations=reads)
    async def summarize_document(ctx: Context, path: str, length: str = "medium", lang: str = "") -> dict:
        """Summarize a whole document (PDF, DOCX, HTML, Markdown or text file on this machine), however
        long: map-reduce over the whole text. length: short, medium, long or bullets; lang: the summary's
        language code (e.g. fr; default: the document's)."""
        work = lambda progress, cancel: document_tools.summarize_document(services, path, length, lang, cancel)  # noqa: E731
        return await run_job(work, relay(ctx))

    @server.tool(annotations=reads)
    async def ask_document(ctx: Context, question: str, paths: list[str], whole: bool = False) -> dict:
        """Answer a question from documents (files on this machine), with checked citations (page or
        section and a verbatim quote). whole: read every chunk (slower) instead of the best passages."""
        work = lambda progress, cancel: document_tools.ask_document(services, question, paths, whole, cancel)  # noqa: E731
        return await run_job(work, relay(ctx))

    @server.tool(annotations=reads)
    async def translate_text(ctx: Context, text: str, to: str,
                             source: Annotated[str, Field(validation_alias="from")] = "auto") -> dict:
        """Translate text (Markdown, code and links kept) into language `to` (e.g. fr, de, ja), from
        language `from` (default: detected)."""
        work = lambda progress, cancel: document_tools.translate_text(services, text, to, source, cancel)  # noqa: E731
        return await run_job(work, relay(ctx))

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False))
    async def translate_document(ctx: Context, path: str, to: str, out_path: str = "") -> dict:
        """Translate a whole document into language `to`, structure kept. With out_path (a new file),
        the translation is written there; else it is returned."""
        work = lambda progress, cancel: document_tools.translate_document(services, path, to, out_path, cancel)  # noqa: E731
        return await run_job(work, relay(ctx))

    @server.tool(annotations=reads)
    def search_history(query: str, limit: int = 10) -> dict:
        """Search the user's saved nemo-chat conversations (every language); returns matching messages."""
        return _one_line_errors(lambda: document_tools.search_history(services, query, limit))

    return server


def serve_stdio(services: Services) -> None:
    build_server(services).run()


def http_app(services: Services, port: int, api_key: str | None = None, allow_hosts=()):
    """The Streamable HTTP app at /mcp, behind the web guard (Host allow-list; the key as Bearer)."""
    from app.faces.web_guard import WebGuard, allowed_hosts

    app = build_server(services).streamable_http_app(host="127.0.0.1")
    return WebGuard(app, hosts=allowed_hosts("127.0.0.1", port, allow_hosts), port=port, token=api_key)


def serve_http(services: Services, port: int, api_key: str | None = None, allow_hosts=()) -> None:
    import uvicorn

    print(f"nemo-chat: serving MCP at http://127.0.0.1:{port}/mcp", flush=True)
    uvicorn.run(http_app(services, port, api_key, allow_hosts), host="127.0.0.1", port=port, log_level="warning")

