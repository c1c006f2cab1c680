"""BEIR datasets: fetch (mirror first, then the network), verify, unzip safely, validate, load.

Questions are the queries and passages the keys (paper §4.1). Passage text is built by one rule,
`passage_text`: "title. text" when the title is non-empty, else the text; both sides stripped.
Queries come from every qrels split (train/dev/test) the dataset ships, or, with
query_source "generated", from BEIR's generated-queries file (one set of synthetic questions
per passage). Both sides are deduplicated on the exact string before encoding.

Nothing half-done is left behind: archives are downloaded to a temporary name and kept only
if they verify; archives are extracted into a temporary folder that is renamed into place.
Each download, copy and unpacking is first checked against the free disk, in one line.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.disk import require_free
from ..core.errors import InputError
from ..core.storage import atomic_path, md5_file, save_json, sha256_file

#: Known archive facts (bytes, md5). FIQA from docs/architecture.md §2; others are recorded by sha256 only.
KNOWN_ARCHIVES = {"fiqa": (17_948_027, "17918ed23cd04fb15047f73e6c3bd9d9")}
DEFAULT_GENERATED_URL = "https://huggingface.co/datasets/BeIR/{name}-generated-queries/resolve/main/train.jsonl.gz"


KEY_TEXTS = ("text", "title_text")


def passage_text(doc: dict[str, Any], key_text: str = "title_text") -> str:
    """A passage's text: "title. text" (title omitted when empty), or the text alone, as the
    official embedding script does (key_text "text")."""
    title = (doc.get("title") or "").strip()
    text = (doc.get("text") or "").strip()
    if key_text == "text" or not title:
        return text
    return f"{title}. {text}" if text else title


# --------------------------------------------------------------------------- fetching


def _check_free(folder: Path, need: int, margin: float | None, what: str) -> None:
    """Refuse a download, copy or unpacking that would not fit on the disk, before it starts
    (`core.disk.require_free`; the run's own check cannot size BEIR files before they exist)."""

    line = require_free(folder, need, margin, what) if need else None
    if line:
        print(line, flush=True)


def _download(url: str, dest: Path, disk_margin: float | None = None) -> None:
    """beir.util.download_url into a temporary file, renamed only after a complete download;
    the size the server announces is checked against the free disk first."""
    import requests
    from beir.util import download_url

    try:
        response = requests.head(url, allow_redirects=True, timeout=30)
        if response.status_code >= 400 and response.status_code != 405:  # 405: no HEAD
            raise InputError(f"{url}: HTTP {response.status_code}; no mirror has {dest.name}")
        announced = response.headers.get("Content-Length", "") if response.ok else ""
        _check_free(dest.parent, int(announced) if announced.isdigit() else 0, disk_margin,
                    f"the bytes of {dest.name} to download")
        with atomic_path(dest, suffix=".part") as tmp:
            download_url(url, str(tmp))
    except requests.RequestException as exc:
        raise InputError(f"{url}: cannot download ({type(exc).__name__}); no mirror has "
                         f"{dest.name} either") from None


def _copy_file(src: Path, dest: Path, disk_margin: float | None = None) -> None:
    """Copy under a temporary name, renamed onto dest only when complete."""
    _check_free(dest.parent, src.stat().st_size, disk_margin, f"the bytes of {src} to copy")
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def unpacked_bytes(archive: Path) -> int:
    """The bytes unzipping `archive` writes, from its central directory (0 for a file that is
    no zip: `safe_extract` says why)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return sum(member.file_size for member in zf.infolist())
    except zipfile.BadZipFile:
        return 0


def verify_archive(path: Path, *, size: int = 0, md5: str = "") -> dict[str, Any]:
    """Check size and md5 when known; raise (and delete the file) if they do not match."""
    actual_size = path.stat().st_size
    if size and actual_size != size:
        path.unlink()
        raise InputError(f"{path}: {actual_size:,} bytes, expected {size:,} (truncated or wrong "
                         f"file; deleted)")
    actual_md5 = md5_file(path)
    if md5 and actual_md5 != md5:
        path.unlink()
        raise InputError(f"{path}: md5 {actual_md5} does not match the expected {md5} (deleted)")
    return {"bytes": actual_size, "md5": actual_md5, "sha256": sha256_file(path),
            "md5_checked": bool(md5), "size_checked": bool(size)}


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a zip into dest, refusing members that would land outside it; returns the root."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InputError(f"{archive}: not a valid zip archive (corrupt or truncated)") from None
    with zf:
        root = dest.resolve()
        for member in zf.infolist():
            target = (root / member.filename).resolve()
            if os.path.isabs(member.filename) or not target.is_relative_to(root):
                raise InputError(f"{archive}: member {member.filename!r} would be extracted "
                                 f"outside {dest}; refusing the archive")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise InputError(f"{archive}: member {member.filename!r} is a symbolic link; "
                                 f"refusing the archive")
        bad = zf.testzip()
        if bad is not None:
            raise InputError(f"{archive}: member {bad!r} fails its CRC check (corrupt archive)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            zf.extractall(tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def find_beir_root(folder: Path) -> Path:
    """The folder that holds corpus.jsonl (archives usually wrap it in a {name}/ folder)."""
    if (folder / "corpus.jsonl").exists():
        return folder
    hits = sorted(p.parent for p in folder.rglob("corpus.jsonl"))
    if not hits:
        raise InputError(f"{folder}: no corpus.jsonl found (not a BEIR-format folder)")
    return hits[0]


def fetch_dataset(name: str, raw_dir: str | Path, *, base_url: str, mirror: str = "",
                  md5: str = "", size: int = 0, disk_margin: float | None = None
                  ) -> dict[str, Any]:
    """Make raw_dir/{name}/ a verified BEIR folder; returns provenance for the manifest.

    Order: a mirror folder (extracted {name}/ or {name}.zip), then the network. The archive is
    kept (raw_dir/{name}.zip) only if it verified. Each copy, download and unpacking is checked
    against the free disk (with `disk_margin`; None: no check) before it starts.
    """
    raw = Path(raw_dir)
    known_size, known_md5 = KNOWN_ARCHIVES.get(name, (0, ""))
    size, md5 = size or known_size, md5 or known_md5
    target = raw / name
    raw.mkdir(parents=True, exist_ok=True)
    if mirror:
        mirror_dir = Path(mirror)
        if not mirror_dir.is_dir():
            raise InputError(f"beir.mirror: {mirror} is not a folder")
        if (mirror_dir / name / "corpus.jsonl").exists():
            src = mirror_dir / name
            _check_free(raw, sum(f.stat().st_size for f in src.rglob("*") if f.is_file()),
                        disk_margin, f"the files of {src} to copy")
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=raw))
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
            return {"source": "mirror folder", "path": str(src),
                    "sha256": {f: sha256_file(target / f) for f in ("corpus.jsonl", "queries.jsonl")
                               if (target / f).exists()}}
        archive_src = mirror_dir / f"{name}.zip"
    else:
        archive_src = None
    archive = raw / f"{name}.zip"
    if archive_src is not None and archive_src.exists():
        _copy_file(archive_src, archive, disk_margin)
        origin = {"source": "mirror archive", "path": str(archive_src)}
    elif archive.exists():
        origin = {"source": "previous download", "path": str(archive)}
    else:
        url = base_url.rstrip("/") + f"/{name}.zip"
        _download(url, archive, disk_margin)
        origin = {"source": "download", "url": url}
    origin["archive"] = verify_archive(archive, size=size, md5=md5)
    # a short disk keeps the verified archive: the re-run after freeing space unpacks it
    _check_free(raw, unpacked_bytes(archive), disk_margin, f"the unpacked files of {archive.name}")
    try:
        safe_extract(archive, target)
    except InputError:
        archive.unlink(missing_ok=True)  # keep a downloaded file only if it verified
        raise
    return origin


def fetch_generated(name: str, raw_dir: str | Path, *, url: str = "", mirror: str = "",
                    disk_margin: float | None = None) -> Path:
    """The generated-queries file ({name}-generated-queries.jsonl[.gz]) from the mirror or the URL."""
    raw = Path(raw_dir)
    for suffix in (".jsonl.gz", ".jsonl"):
        if mirror and (Path(mirror) / f"{name}-generated-queries{suffix}").exists():
            dest = raw / f"{name}-generated-queries{suffix}"
            _copy_file(Path(mirror) / f"{name}-generated-queries{suffix}", dest, disk_margin)
            return dest
    dest = raw / f"{name}-generated-queries.jsonl.gz"
    if not dest.exists():
        _download((url or DEFAULT_GENERATED_URL).format(name=name), dest, disk_margin)
    return dest


def fetch(name: str, raw_dir: str | Path, *, base_url: str, mirror: str = "", md5: str = "",
          size: int = 0, query_source: str = "beir", generated_url: str = "",
          disk_margin: float | None = None) -> dict[str, Any]:
    """The fetch stage: the verified BEIR folder (and the generated queries when asked for),
    with their provenance written to raw_dir/manifest.json."""

    origin = fetch_dataset(name, raw_dir, base_url=base_url, mirror=mirror, md5=md5, size=size,
                           disk_margin=disk_margin)
    origin["name"] = name
    generated = None
    if query_source == "generated":
        generated = fetch_generated(name, raw_dir, url=generated_url, mirror=mirror,
                                    disk_margin=disk_margin)
        origin["generated_queries"] = {"file": generated.name, "sha256": sha256_file(generated)}
    origin["unique_texts"] = count_unique_texts(find_beir_root(Path(raw_dir) / name), generated)
    save_json(Path(raw_dir) / "manifest.json", origin)
    return origin


# --------------------------------------------------------------------------- counting before encoding

def text_rules(query_source: str, key_text: str) -> tuple[str, str]:
    """The rules that `load_texts` takes its keys and its queries by, as `count_unique_texts`
    names them: "corpus title_text", "corpus text" or "generated text" for the keys,
    "qrels questions" or "generated questions" for the queries."""
    keys = "generated text" if (query_source, key_text) == ("generated", "text") else f"corpus {key_text}"
    return keys, "generated questions" if query_source == "generated" else "qrels questions"


def expected_counts(unique_texts: dict[str, int], query_source: str, key_text: str
                    ) -> tuple[int | None, int | None]:
    """(keys, queries) that encoding a fetched dataset with these settings writes at most: its
    unique texts under their rules, as the fetch stage counted them (None where it did not).
    At most, since texts that differ only in case can encode to one vector, merged then."""
    keys, queries = text_rules(query_source, key_text)
    return unique_texts.get(keys), unique_texts.get(queries)


def _digest(text: str) -> int:
    """An 8-byte digest of a text (0 for no text: as in TextSet.dedup, an empty text is none).
    Two of 20M different texts share one with probability about 1e-5."""
    if not text:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode("utf8"), digest_size=8).digest(), "little")


def _as_numbers(digests: array) -> np.ndarray:
    return np.frombuffer(digests, dtype=np.uint64)


def _distinct(digests: np.ndarray) -> int:
    """How many different texts these digests stand for."""
    return int(np.count_nonzero(np.unique(digests)))


def count_unique_texts(folder: Path, generated_file: Path | None = None) -> dict[str, int]:
    """The unique texts of a BEIR folder (and generated-queries file) under every rule of
    `text_rules`, counted as `load_texts` deduplicates them, so that the disk a dataset needs is
    known when it is fetched rather than once it is encoded (hours on a GPU for HotpotQA). It
    holds 8-byte digests, not texts: about 0.5 GB for HotpotQA's 5.2M passages and their questions.
    The corpus is read as GenericDataLoader reads it: a repeated _id keeps its last record."""
    ids, by_rule = array("Q"), {key_text: array("Q") for key_text in KEY_TEXTS}
    for _, doc in iter_jsonl(folder / "corpus.jsonl"):
        ids.append(_digest(str(doc.get("_id"))))
        for key_text, digests in by_rule.items():
            digests.append(_digest(passage_text(doc, key_text)))
    last = len(ids) - 1 - np.unique(_as_numbers(ids)[::-1], return_index=True)[1]  # each _id's last line
    counts = {f"corpus {key_text}": _distinct(_as_numbers(d)[last]) for key_text, d in by_rule.items()}
    questions = {str(r.get("_id")): r.get("text") for _, r in iter_jsonl(folder / "queries.jsonl")}
    splits = qrels_files(folder)
    asked = array("Q")
    if splits:  # the questions that a qrels split names
        for path in splits:
            with open(path, newline="", encoding="utf8") as fh:
                reader = csv.reader(fh, delimiter="\t")
                next(reader, None)
                for row in filter(None, reader):  # a blank line: the encode stage refuses it
                    asked.append(_digest((questions.get(row[0]) or "").strip()))
    else:  # every line of queries.jsonl, as load_texts reads a folder without qrels
        for _, record in iter_jsonl(folder / "queries.jsonl"):
            asked.append(_digest(str(record.get("text", "")).strip()))
    counts["qrels questions"] = _distinct(_as_numbers(asked))
    if generated_file is not None:
        asked, texts, every_text = array("Q"), array("Q"), True
        for _, record in iter_jsonl(generated_file):
            asked.append(_digest(str(record.get("query", "")).strip()))
            every_text &= "text" in record
            texts.append(_digest(str(record.get("text", "")).strip()))
        counts["generated questions"] = _distinct(_as_numbers(asked))
        if every_text:  # else load_texts refuses the file with key_text "text"
            counts["generated text"] = _distinct(_as_numbers(texts))
    return counts


# --------------------------------------------------------------------------- validation and loading


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-empty line; a malformed line names file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: malformed JSON line ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{number}: expected a JSON object")
            yield number, record


def _ids(path: Path, what: str) -> set[str]:
    ids = set()
    for number, record in iter_jsonl(path):
        if "_id" not in record:
            raise InputError(f"{path}:{number}: {what} record without an _id")
        ids.add(str(record["_id"]))
    return ids


def qrels_files(folder: Path) -> list[Path]:
    """A BEIR folder's qrels/{split}.tsv files, by split name."""
    return sorted((folder / "qrels").glob("*.tsv"))


def validate_folder(folder: Path) -> list[str]:
    """Check corpus, queries and every qrels file; return the qrels splits present."""
    corpus_file, query_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    for f in (corpus_file, query_file):
        if not f.exists():
            raise InputError(f"{f}: file not found (not a BEIR-format folder)")
    corpus_ids = _ids(corpus_file, "corpus")
    if not corpus_ids:
        raise InputError(f"{corpus_file}: the corpus is empty")
    query_ids = _ids(query_file, "query")
    splits = [p.stem for p in qrels_files(folder)]
    for split in splits:
        path = folder / "qrels" / f"{split}.tsv"
        with open(path, newline="", encoding="utf8") as fh:
            reader = csv.reader(fh, delimiter="\t")
            next(reader, None)  # header
            for number, row in enumerate(reader, start=2):
                if len(row) < 2:
                    raise InputError(f"{path}:{number}: expected query-id, corpus-id, score")
                if row[0] not in query_ids:
                    raise InputError(f"{path}:{number}: query id {row[0]!r} is not in {query_file.name}")
                if row[1] not in corpus_ids:
                    raise InputError(f"{path}:{number}: corpus id {row[1]!r} is not in {corpus_file.name}")
    return splits


@dataclass
class TextSet:
    """Unique texts and, for each, the first id it came from."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    before_dedup: int = 0

    @classmethod
    def dedup(cls, pairs: list[tuple[str, str]]) -> TextSet:
        seen: dict[str, str] = {}
        for ident, text in pairs:
            if text and text not in seen:
                seen[text] = ident
        return cls(list(seen), list(seen.values()), len(pairs))


def load_texts(folder: str | Path, *, query_source: str = "beir",
               generated_file: Path | None = None, key_text: str = "title_text"
               ) -> tuple[TextSet, TextSet, dict[str, Any]]:
    """(passages, queries, info) of a BEIR folder, validated, with GenericDataLoader.

    The official embedding script reads BEIR's generated-queries set and keeps its unique
    `query` strings as queries and its unique `text` strings (no title) as keys: that is
    query_source "generated" with key_text "text". Otherwise keys are the corpus passages,
    "title. text" (key_text "title_text") or the text alone.
    """
    from beir.datasets.data_loader import GenericDataLoader

    if key_text not in KEY_TEXTS:
        raise InputError(f"beir.key_text: unknown value {key_text!r}; expected one of {KEY_TEXTS}")
    folder = find_beir_root(Path(folder))
    splits = validate_folder(folder)
    loader = GenericDataLoader(data_folder=str(folder))
    corpus = loader.load_corpus()
    info: dict[str, Any] = {"folder": str(folder), "qrels_splits": splits, "key_text": key_text}
    records: list[dict[str, Any]] = []
    if query_source == "generated":
        if generated_file is None:
            raise InputError("beir.query_source: 'generated' needs the generated-queries file")
        for number, record in iter_jsonl(generated_file):
            if "query" not in record:
                raise InputError(f"{generated_file}:{number}: generated-query record without 'query'")
            if key_text == "text" and "text" not in record:
                raise InputError(f"{generated_file}:{number}: generated-query record without "
                                 f"'text' (key_text: text takes the keys from it)")
            records.append({**record, "_line": number})
    if query_source == "generated" and key_text == "text":
        passages = TextSet.dedup([(str(r.get("_id", r["_line"])), str(r["text"]).strip())
                                  for r in records])
        info["passage_rule"] = (f"unique 'text' strings of {generated_file.name}, no title "
                                f"(as the official embedding script)")
    else:
        passages = TextSet.dedup([(pid, passage_text(doc, key_text)) for pid, doc in corpus.items()])
        info["passage_rule"] = ("corpus text, no title" if key_text == "text" else
                                "corpus title + '. ' + text (title omitted when empty)")
    if not passages.texts:
        raise InputError(f"{folder / 'corpus.jsonl'}: no passage has any text")
    if query_source == "generated":
        queries = TextSet.dedup([(str(r.get("_id", r["_line"])), str(r["query"]).strip())
                                 for r in records])
        info["query_source"] = f"generated ({generated_file.name})"
    else:
        pairs = []
        for split in splits:  # every split's questions; a fresh query table per split
            loader.queries, loader.qrels = {}, {}
            _, split_queries, _ = loader.load(split=split)
            pairs += [(qid, text.strip()) for qid, text in split_queries.items()]
        if not splits:  # a custom folder without qrels: every question of queries.jsonl
            pairs = [(str(r["_id"]), str(r.get("text", "")).strip())
                     for _, r in iter_jsonl(folder / "queries.jsonl")]
        queries = TextSet.dedup(pairs)
        info["query_source"] = "beir (questions of every qrels split)"
    if not queries.texts:
        raise InputError(f"{folder}: no query text found")
    return passages, queries, info
