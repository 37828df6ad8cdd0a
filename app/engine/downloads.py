"""Catalog downloads from the Hugging Face Hub into its cache: progress, Stop, resume, checksum.

huggingface_hub decides where things go and how to reach the hub (HF_HOME / HF_HUB_CACHE,
HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN or `hf auth login`). Its hf_hub_download cannot be stopped
and starts over after an interruption (each attempt writes a new temporary name), so the transfer
is done here with its http_get (Range requests, retries on dropped connections) into a partial
file with a fixed name beside the cache's blobs: the next call goes on where the last one stopped.
The bytes are checked against the hub's ETag (a large file's SHA-256) before hf_hub_download
links the blob into the cache like any download of its own.

Errors are one line (a message key and its values) that says what to do, in the words of the face
that shows them (`Advice`): the command line names commands and --model, Settings names its buttons
and the models folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from app.base.config import models_dir
from app.base.errors import Cancelled, UserError
from app.base.jobs import CancelToken, Progress, ProgressCallback, no_progress
from app.base.messages import Message
from app.engine.catalog import CatalogModel, cached_path, catalog_model

READ_BLOCK = 16 * 2**20
SAFE_ETAG = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,127}")  # a hub's ETag: a SHA-256 or git SHA-1, in hex


@dataclass(frozen=True)
class Advice:
    """What an error tells the user to do, as the face that shows it can be used: two message keys."""

    resume_key: str  # how to go on after a failed attempt ({name})
    elsewhere_key: str  # how to use a model file got some other way ({folder})

    def for_model(self, name: str) -> Said:
        return Said(Message(self.resume_key, name=name), Message(self.elsewhere_key, folder=str(models_dir())))


@dataclass(frozen=True)
class Said:
    """The advice for one model: what an error says to do."""

    resume: Message
    elsewhere: Message


CLI_ADVICE = Advice("download_resume_cli", "download_elsewhere_cli")
UI_ADVICE = Advice("download_resume_ui", "download_elsewhere_ui")


def download(name: str, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
             advice: Advice = CLI_ADVICE) -> Path:
    """Download a catalog model (no-op when cached) and return its path in the cache.
    Raises UserError with what to do (in `advice`'s words), Cancelled when stopped (the partial file
    stays for a resume)."""
    model = catalog_model(name)
    said = advice.for_model(model.name)
    cancel = cancel or CancelToken()
    found = cached_path(model)
    if found is not None:
        size = found.stat().st_size
        progress(Progress(size, size, Message("download_already", name=model.name)))
        return found
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    if constants.is_offline_mode():
        raise _offline(model, said)
    with _hub_errors(model, said):
        url, headers, size, etag = _metadata(model)
        blob = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model.repo, repo_type="model") / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(f"{blob}.lock"):
            if not blob.exists():
                partial = blob.with_name(f"{etag}.incomplete")
                _transfer(url, headers, size, etag, partial, _Reporter(progress, cancel, size, model.name))
                os.replace(partial, blob)
        return Path(hf_hub_download(model.repo, model.filename, revision=model.revision))  # links the blob


def _metadata(model: CatalogModel) -> tuple[str, dict, int, str]:
    """(download URL, headers, size, ETag) from one HEAD request."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(model.repo, model.filename, revision=model.revision)
    meta = get_hf_file_metadata(url)
    if not meta.etag or not meta.commit_hash or meta.size is None:
        raise UserError("download_not_hub", url=url)
    if not SAFE_ETAG.fullmatch(meta.etag):  # it names the file in the cache: never a path
        raise UserError("download_bad_etag", url=url, etag=repr(meta.etag[:80]))
    headers = build_hf_headers()
    if urlparse(meta.location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub
    return meta.location, headers, meta.size, meta.etag


def _offline(model: CatalogModel, advice: Said) -> UserError:
    return UserError("download_offline", name=model.name, elsewhere=advice.elsewhere)


@contextmanager
def _hub_errors(model: CatalogModel, advice: Said):
    """huggingface_hub's and the network's exceptions -> one line that says what to do."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError)

    where = Message("download_hub_at", endpoint=constants.ENDPOINT)
    try:
        yield
    except OfflineModeIsEnabled:
        raise _offline(model, advice) from None
    except GatedRepoError:
        raise UserError("download_gated", repo=model.repo) from None
    except RepositoryNotFoundError:
        raise UserError("download_repo_not_found", repo=model.repo, where=where) from None
    except RemoteEntryNotFoundError:
        raise UserError("download_no_file", repo=model.repo, filename=model.filename) from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None) or "?"
        raise UserError("download_http_error", where=where, status=status, filename=model.filename,
                        resume=advice.resume, elsewhere=advice.elsewhere) from None
    except httpx2.TransportError as exc:
        raise UserError("download_unreachable", where=where, error=f"{type(exc).__name__}: {exc}",
                        resume=advice.resume, elsewhere=advice.elsewhere) from None


class _Reporter:
    """Progress in bytes for one download; raises Cancelled once Stop was pressed."""

    def __init__(self, progress: ProgressCallback, cancel: CancelToken, total: int, name: str) -> None:
        self.progress, self.cancel, self.total, self.name = progress, cancel, total, name

    def __call__(self, done: int, key: str) -> None:
        if self.cancel.cancelled:
            raise Cancelled()
        self.progress(Progress(done, self.total, Message(key, name=self.name)))


def _transfer(url: str, headers: dict, size: int, etag: str, partial: Path, report: _Reporter) -> None:
    """Fetch the rest of `partial` and check it; a file that fails the check is deleted."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import silent_tqdm

    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    free = shutil.disk_usage(partial.parent).free
    if size - have > free:
        raise UserError("download_no_room", folder=str(partial.parent), need=f"{(size - have) / 1e9:.1f}",
                        free=f"{free / 1e9:.1f}")
    with open(partial, "ab") as f:
        sink = _Sink(f, partial, _hasher(etag, size), report)
        sink.rehash(have)
        http_get(url, sink, resume_size=have, headers=headers, expected_size=size, tqdm_class=silent_tqdm)
    if sink.digest is not None and sink.digest.hexdigest() != etag:
        partial.unlink()
        raise UserError("download_bad_checksum", name=report.name)


def _hasher(etag: str, size: int):
    """SHA-256 for large (LFS) files, git's blob SHA-1 for small ones; None for other ETags."""
    if len(etag) == 64:
        return hashlib.sha256()
    if len(etag) == 40:
        return hashlib.sha1(f"blob {size}\0".encode())
    return None


class _Sink:
    """The partial file as http_get writes into it: hashed, counted and stoppable between chunks."""

    def __init__(self, file, path: Path, digest, report: _Reporter) -> None:
        self.file, self.path, self.digest, self.report = file, path, digest, report
        self.start = digest.copy() if digest is not None else None
        self.done = 0

    def rehash(self, upto: int) -> None:
        """Hash (again) the first `upto` bytes already on disk."""
        self.digest = self.start.copy() if self.start is not None else None
        self.done = 0
        with open(self.path, "rb") as f:
            while self.done < upto:
                block = f.read(min(READ_BLOCK, upto - self.done))
                if self.digest is not None:
                    self.digest.update(block)
                self.done += len(block)
                self.report(self.done, "download_checking")

    def write(self, chunk: bytes) -> int:
        self.file.write(chunk)
        if self.digest is not None:
            self.digest.update(chunk)
        self.done += len(chunk)
        self.report(self.done, "download_downloading")
        return len(chunk)

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        """The server ignored the Range request: http_get starts over from here."""
        end = self.file.truncate(size)
        self.file.flush()
        self.rehash(end)
        return end
