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

    def do_GET(self):  # noqa: N802 (http.server API)
        body = PAYLOAD.get(self.path)
        rng = self.headers.get("Range")
        RangeHandler.requests.append((self.path, rng))
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
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
