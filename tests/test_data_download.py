"""Resumable download against a local HTTP server (loopback only) that honours Range."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from laser_repro.data.download import category_name, download_category

PAYLOAD = {
    "/categoryFilesSmall/Pet_Supplies_5.json.gz": bytes(range(256)) * 4000,
    "/metaFiles2/meta_Pet_Supplies.json.gz": b"meta" * 1000,
}


class RangeHandler(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str | None]] = []
    content_range = True  # whether a 416 says the file's size (some servers do not)

    def do_HEAD(self):  # noqa: N802 (http.server API)
        body = PAYLOAD.get(self.path)
        RangeHandler.requests.append((self.path, "HEAD"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_GET(self):  # noqa: N802 (http.server API)
        body = PAYLOAD.get(self.path)
        rng = self.headers.get("Range")
        RangeHandler.requests.append((self.path, rng))
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(body):  # nothing from there on: 416, with the full size
            self.send_response(416)
            if RangeHandler.content_range:
                self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests = []
    RangeHandler.content_range = True
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_resumes_and_records_checksums(server, tmp_path):
    reviews = PAYLOAD["/categoryFilesSmall/Pet_Supplies_5.json.gz"]
    (tmp_path / "Pet_Supplies_5.json.gz.part").write_bytes(reviews[:1000])  # an interrupted download
    record = download_category("pet", tmp_path, base=server, progress=False)
    assert (tmp_path / "Pet_Supplies_5.json.gz").read_bytes() == reviews
    assert RangeHandler.requests[0] == ("/categoryFilesSmall/Pet_Supplies_5.json.gz", "bytes=1000-")
    rec = record["Pet_Supplies_5.json.gz"]
    assert rec["size"] == len(reviews) and rec["sha256"] == hashlib.sha256(reviews).hexdigest()
    assert not list(tmp_path.glob("*.part"))
    # a second call fetches nothing
    n = len(RangeHandler.requests)
    download_category("Pet_Supplies", tmp_path, base=server, progress=False)
    assert len(RangeHandler.requests) == n


def test_download_errors_are_helpful(server, tmp_path):
    with pytest.raises(ValueError, match="unknown category"):
        category_name("books")
    with pytest.raises(OSError, match="HTTP 404"):
        download_category("games", tmp_path, base=server, progress=False)


def test_download_never_replaces_a_file_it_did_not_download(server, tmp_path):
    """A user's own Pet_Supplies_5.json.gz in --out was downloaded again and silently replaced."""
    mine = tmp_path / "Pet_Supplies_5.json.gz"
    mine.write_bytes(b"my own copy")
    with pytest.raises(FileExistsError, match=r"Pet_Supplies_5.json.gz: already there, and not downloaded by "
                                              r"`laser-repro data download`.*data prepare --input"):
        download_category("pet", tmp_path, base=server, progress=False)
    assert mine.read_bytes() == b"my own copy" and RangeHandler.requests == []
    # nor one put over a file it downloaded and recorded (a size that is not the recorded one: not its download)
    mine.unlink()
    download_category("pet", tmp_path, base=server, progress=False)
    mine.write_bytes(b"my own copy")
    n = len(RangeHandler.requests)
    with pytest.raises(FileExistsError, match=r"Pet_Supplies_5.json.gz: 11 bytes, not the 1024000 bytes `laser-repro "
                                              r"data download` recorded \(sha256 \w{12}\): changed or replaced since"):
        download_category("pet", tmp_path, base=server, progress=False)
    assert mine.read_bytes() == b"my own copy" and len(RangeHandler.requests) == n


def test_a_removed_record_does_not_download_again(server, tmp_path):
    """In the workflow downloads.json is the job's output: Snakemake removes it when the job fails (here: after
    the reviews file, before meta), so the finished reviews file was fetched again from scratch."""
    reviews = PAYLOAD["/categoryFilesSmall/Pet_Supplies_5.json.gz"]
    download_category("pet", tmp_path, base=server, progress=False)
    (tmp_path / "downloads.json").unlink()
    (tmp_path / "meta_Pet_Supplies.json.gz").unlink()
    n = len(RangeHandler.requests)
    record = download_category("pet", tmp_path, base=server, progress=False)
    assert [path for path, _ in RangeHandler.requests[n:]] == ["/metaFiles2/meta_Pet_Supplies.json.gz"]
    assert record["Pet_Supplies_5.json.gz"]["sha256"] == hashlib.sha256(reviews).hexdigest()
    assert set(record) == {"Pet_Supplies_5.json.gz", "meta_Pet_Supplies.json.gz"}
    assert (tmp_path / "downloads.json").exists()


def test_a_complete_part_file_is_accepted_only_at_the_files_size(server, tmp_path):
    """On HTTP 416 a .part file was renamed into place unchecked (one left by another mirror, say)."""
    reviews = PAYLOAD["/categoryFilesSmall/Pet_Supplies_5.json.gz"]
    part = tmp_path / "Pet_Supplies_5.json.gz.part"
    part.write_bytes(reviews + b"more")  # longer than the file: not this file
    with pytest.raises(OSError, match=r"the server refuses to resume .*Pet_Supplies_5.json.gz.part \(1024004 bytes; "
                                      r"the file has 1024000 bytes\); delete it"):
        download_category("pet", tmp_path, base=server, progress=False)
    assert part.exists() and not (tmp_path / "Pet_Supplies_5.json.gz").exists()
    part.write_bytes(reviews)  # complete: the server answers 416 from its end, and it is taken as it is
    record = download_category("pet", tmp_path, base=server, progress=False)
    assert record["Pet_Supplies_5.json.gz"]["size"] == len(reviews) and not part.exists()
    # a server whose 416 does not say the size: asked by a HEAD request
    for name in ("Pet_Supplies_5.json.gz", "meta_Pet_Supplies.json.gz"):
        (tmp_path / name).unlink()
    for mark in tmp_path.glob(".*.download.json"):
        mark.unlink()
    (tmp_path / "downloads.json").unlink()
    RangeHandler.content_range = False
    part.write_bytes(reviews)
    n = len(RangeHandler.requests)
    record = download_category("pet", tmp_path, base=server, progress=False)
    assert ("/categoryFilesSmall/Pet_Supplies_5.json.gz", "HEAD") in RangeHandler.requests[n:]
    assert record["Pet_Supplies_5.json.gz"]["size"] == len(reviews)


def test_a_download_killed_before_its_record_is_still_its_own(server, tmp_path):
    """Killed after the file was renamed into place and before its size and sha256 were recorded (hashing a
    multi-GB file takes seconds), the next call refused the file as not its own."""
    reviews = PAYLOAD["/categoryFilesSmall/Pet_Supplies_5.json.gz"]
    dest = tmp_path / "Pet_Supplies_5.json.gz"
    dest.write_bytes(reviews[:10])
    (tmp_path / ".Pet_Supplies_5.json.gz.download.json").write_text('{"url": "http://x"}')  # the mark fetch left
    download_category("pet", tmp_path, base=server, progress=False)
    assert dest.read_bytes() == reviews
    # a file recorded only in downloads.json (downloaded before marks) is marked when next seen
    (tmp_path / ".Pet_Supplies_5.json.gz.download.json").unlink()
    n = len(RangeHandler.requests)
    download_category("pet", tmp_path, base=server, progress=False)
    assert len(RangeHandler.requests) == n and (tmp_path / ".Pet_Supplies_5.json.gz.download.json").exists()
