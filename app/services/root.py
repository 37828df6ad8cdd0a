"""The one place that builds a process's services: settings, database, engine, chat, jobs.

The UI, the CLI and the tests all start here, and close it on exit (the engine is freed, the one
SQLite connection closed, running jobs stopped). The settings choose the engine: the embedded
llama.cpp one, or a server (`settings.remote`); saving other settings switches it.
"""

from __future__ import annotations

from dataclasses import replace

from app.base.config import Settings, database_path, load_settings, save_settings
from app.base.jobs import CancelToken, JobRegistry
from app.history import History
from app.runtime import Engine, engine_for, is_engine_for
from app.services.chat import ChatService, history_search, load_options, sampling_options
from app.services.mcp_client import McpServers
from app.services.mcp_config import ToolChoices
from app.services.retrieval import ask
from app.services.summarize import SummaryOptions, summarize
from app.services.toolbox import ToolBox
from app.services.translate import TranslateOptions, TranslationJob, TranslationRequest
from app.storage.document_store import DocumentStore


class Services:
    """Everything one process shares; `settings` may be replaced (the UI's Settings tab does)."""

    def __init__(self, settings: Settings | None = None, engine: Engine | None = None, **overrides) -> None:
        settings = settings or load_settings()
        self.settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        self.engine = engine or engine_for(self.settings)  # a bad server URL is refused before anything opens
        self.history = History(database_path())
        self.documents = DocumentStore(self.history)
        self.mcp = McpServers.configured()  # started when their tools are first needed
        self.tools = ToolBox(history_search(self.history), self.mcp, ToolChoices())
        self.chat = ChatService(self.history, self.engine, self.documents, self.tools)
        self.jobs = JobRegistry()

    def ensure_model(self, settings: Settings | None = None) -> None:
        """Load the model the settings name (a no-op when it is loaded already)."""
        self.chat.ensure_model(settings or self.settings)

    def save_settings(self, settings: Settings) -> None:
        """Load the model these settings name (on the engine they choose), then keep them; nothing
        changes when loading fails."""
        if is_engine_for(self.engine, settings):
            self.ensure_model(settings)
        else:
            engine = engine_for(settings)
            engine.load(load_options(settings))
            self.engine, old = engine, self.engine
            self.chat.engine = engine
            old.unload()
        self.settings = settings
        save_settings(settings)

    def summarize(self, document_id: int, options: SummaryOptions = SummaryOptions(),
                  cancel: CancelToken | None = None):
        """A summary job's updates (the last one carries the result); loads the model first."""
        self.ensure_model()
        return summarize(self.engine, self.documents, document_id, options, sampling_options(self.settings), cancel)

    def ask(self, document_ids: list[int], question: str, whole: bool = False, cancel: CancelToken | None = None):
        """A question's updates (the last one carries the `AskResult`); loads the model first."""
        self.ensure_model()
        return ask(self.engine, self.documents, document_ids, question, whole, sampling_options(self.settings), cancel)

    def translation(self, request: TranslationRequest, max_tokens: int = 0) -> TranslationJob:
        """A translation job for this request with the current settings; loads the model first."""
        self.ensure_model()
        options = TranslateOptions(temperature=self.settings.temperature, max_tokens=max_tokens)
        return TranslationJob(self.engine, self.documents, request, options)

    def close(self) -> None:
        self.jobs.stop_all()
        self.mcp.close()
        self.engine.unload()
        self.history.close()

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *_) -> None:
        self.close()
