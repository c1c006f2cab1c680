"""A small BEIR-format dataset built by the tests, and a loopback HTTP server to serve it."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np

TOPICS = ["interest rates", "stock options", "credit cards", "mortgage payments", "index funds",
          "tax returns", "retirement savings", "small business loans", "currency exchange",
          "insurance premiums"]
VERBS = ["affect", "change", "reduce", "increase", "influence", "explain"]


def make_beir_folder(root: Path, n_passages: int = 300, n_queries: int = 160, seed: int = 0) -> dict:
    """corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv with planted exact duplicates."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    corpus = []
    for i in range(n_passages):
        a, b = rng.choice(TOPICS, 2, replace=False)
        text = (f"Passage {i} explains how {a} can {rng.choice(VERBS)} {b} for households, "
                f"with an example about {rng.choice(TOPICS)}.")
        doc = {"_id": f"d{i}", "title": a.title() if i % 3 else "", "text": text}
        if i >= 250:  # planted exact duplicates under new ids
            doc = {**corpus[i - 250], "_id": f"d{i}"}
        corpus.append(doc)
    queries = []
    for i in range(n_queries):
        a, b = rng.choice(TOPICS, 2, replace=False)
        text = f"How do {a} {rng.choice(VERBS)} {b}? ({i})"
        queries.append({"_id": f"q{i}", "text": queries[i - 140]["text"] if i >= 140 else text})
    with open(root / "corpus.jsonl", "w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in corpus)
    with open(root / "queries.jsonl", "w") as fh:
        fh.writelines(json.dumps(q) + "\n" for q in queries)
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in (("train", range(0, n_queries // 2)), ("test", range(n_queries // 2, n_queries))):
        with open(root / "qrels" / f"{split}.tsv", "w") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            fh.writelines(f"q{i}\td{(7 * i) % n_passages}\t1\n" for i in rows)
    texts = {((d["title"] + ". " + d["text"]) if d["title"] else d["text"]) for d in corpus}
    return {"unique_passages": len(texts), "unique_queries": len({q["text"] for q in queries}),
            "passages": n_passages, "queries": n_queries}


def zip_folder(folder: Path, archive: Path, arcroot: str) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{arcroot}/{path.relative_to(folder)}")
    return archive


def evil_zip(archive: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil/corpus.jsonl", '{"_id": "d0", "text": "x"}\n')
        zf.writestr("../outside.txt", "escaped")
    archive.write_bytes(buf.getvalue())
    return archive


class LoopbackServer:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass
