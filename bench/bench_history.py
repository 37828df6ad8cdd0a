"""The history at a heavy user's size: 100,000 messages in 10,000 conversations in NeMo's 11
languages (plus one conversation of 2,000 messages). Measures search p50/p95 (goal p95 <= 20 ms),
the sidebar's first page, opening the 2,000-message conversation, export and import throughput.

    .venv/bin/python bench/bench_history.py [--conversations 10000] [--messages 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from app.history import History
from app.services.exchange import export_json, import_files

SENTENCES = {
    "en": "The train to the coast leaves at nine and the tickets are cheaper online",
    "fr": "Le train pour la côte part à neuf heures et les billets sont moins chers en ligne",
    "de": "Der Zug an die Küste fährt um neun und die Fahrkarten sind online günstiger",
    "es": "El tren a la costa sale a las nueve y los billetes son más baratos en línea",
    "it": "Il treno per la costa parte alle nove e i biglietti costano meno online",
    "pt": "O comboio para a costa parte às nove e os bilhetes são mais baratos online",
    "zh": "去海边的火车九点出发网上买票更便宜我们明天去北京看长城",
    "ja": "海辺行きの電車は九時に出発しますオンラインの切符は安いです",
    "ko": "해안으로 가는 기차는 아홉 시에 출발하고 온라인 표가 더 쌉니다",
    "ar": "القطار إلى الساحل يغادر في التاسعة والتذاكر أرخص على الإنترنت",
    "hi": "तट की ट्रेन नौ बजे निकलती है और ऑनलाइन टिकट सस्ते हैं",
}
QUERIES = ["train", "billets", "Fahrkarten", "línea", "treno", "bilhetes", "长城", "切符", "기차", "القطار", "टिकट",
           "à", "北", "zz", "nine and the", "günstiger"]


def fill(history: History, conversations: int, messages: int, long_one: int, rng: random.Random) -> int:
    """Write the history straight into SQLite in one transaction; the long conversation's id."""
    languages = list(SENTENCES)
    spread = messages - long_one
    now = time.time() - 86400 * 365
    with history.database.transaction() as conn:
        for c in range(conversations + 1):
            count = long_one if c == conversations else spread * (c + 1) // conversations - spread * c // conversations
            lang = languages[c % len(languages)]
            cid = conn.execute("INSERT INTO conversations (title, title_by, created_at, updated_at) VALUES (?, 'message', ?, ?)",
                               [f"{lang} {c}: {SENTENCES[lang][:30]}", now + c, now + c]).lastrowid
            parent = None
            for m in range(count):
                words = SENTENCES[lang].split() if lang not in ("zh", "ja") else list(SENTENCES[lang])
                rng.shuffle(words)
                text = (" " if lang not in ("zh", "ja") else "").join(words) + f" #{c}-{m}"
                parent = conn.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at, parent_id)"
                    " VALUES (?, ?, ?, 'complete', ?, ?, ?)",
                    [cid, "user" if m % 2 == 0 else "assistant", text, now + c, now + c, parent]).lastrowid
            conn.execute("UPDATE conversations SET current_id = ? WHERE id = ?", [parent, cid])
    return cid


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--long", type=int, default=2_000, help="messages in the one long conversation")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-history-"))
    history = History(folder / "big.db")
    started = time.perf_counter()
    long_id = fill(history, args.conversations, args.messages, args.long, random.Random(7))
    total = history.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    fill_s = time.perf_counter() - started

    searches = [timed(lambda q=q: history.search(q, 20)) for _ in range(5) for q in QUERIES]
    first_page = statistics.median(timed(lambda: history.conversations(limit=50)) for _ in range(20))
    opening = statistics.median(timed(lambda: history.messages(long_id)) for _ in range(10))

    started = time.perf_counter()
    exported = export_json(history)
    export_s = time.perf_counter() - started
    path = folder / "export.json"
    import json

    path.write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")
    fresh = History(folder / "fresh.db")
    started = time.perf_counter()
    result = import_files(fresh, [path])
    import_s = time.perf_counter() - started
    assert result.messages == total, (result.messages, total)

    searches.sort()
    p50, p95 = searches[len(searches) // 2], searches[int(len(searches) * 0.95)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"history: {total:,} messages in {args.conversations + 1:,} conversations (11 languages), "
          f"written in {fill_s:.1f} s; database {os.path.getsize(folder / 'big.db') / 2**20:.0f} MiB")
    print(f"search ({len(searches)} queries, 1-12 characters): p50 {p50:.1f} ms, p95 {p95:.1f} ms (goal p95 <= 20 ms)")
    print(f"sidebar first page (50 conversations): {first_page:.1f} ms")
    print(f"open the {args.long:,}-message conversation (its branch): {opening:.1f} ms")
    print(f"export: {total / export_s:,.0f} messages/s ({export_s:.1f} s); "
          f"import: {total / import_s:,.0f} messages/s ({import_s:.1f} s)")
    history.close(), fresh.close()


if __name__ == "__main__":
    main()
