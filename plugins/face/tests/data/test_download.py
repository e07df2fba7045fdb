"""Downloads against a local HTTP server (Range, resume, checksum) and safe extraction."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prunekit.errors import PrunekitError
from prunekit_face.data import LFW, Source, download, download_lfw, extract


class Server:
    """Files served from memory on 127.0.0.1; records every request's Range header."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges: list[str | None] = []
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many bytes of the next response
        self.url = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.ranges.append(self.headers.get("Range"))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and state.honour_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if state.cut_after is not None:
                payload, state.cut_after = payload[: state.cut_after], None
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = download(f"{server.url}/f.bin", tmp_path / "f.bin", _sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [None]
    assert not (tmp_path / "f.bin.part").exists()
    download(f"{server.url}/f.bin", dest, _sha(PAYLOAD), progress=False)
    assert len(server.ranges) == 1  # already there: no request


def test_resume_with_range_request(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:3000])
    dest = download(f"{server.url}/f.bin", tmp_path / "f.bin", _sha(PAYLOAD), progress=False)
    assert server.ranges == ["bytes=3000-"] and dest.read_bytes() == PAYLOAD


def test_interrupted_download_resumes(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.cut_after = 4000
    with pytest.raises(PrunekitError, match="run again to resume"):
        download(f"{server.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin.part").read_bytes() == PAYLOAD[:4000]
    dest = download(f"{server.url}/f.bin", tmp_path / "f.bin", _sha(PAYLOAD), progress=False)
    assert server.ranges == [None, "bytes=4000-"] and dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes")
    dest = download(f"{server.url}/f.bin", tmp_path / "f.bin", _sha(PAYLOAD), progress=False)
    assert server.ranges == ["bytes=11-"] and dest.read_bytes() == PAYLOAD


def test_complete_partial_file_restarts_after_416(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD + b"extra")
    dest = download(f"{server.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert server.ranges == ["bytes=10245-", None] and dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path) -> None:
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(PrunekitError, match=f"has sha256 {_sha(PAYLOAD)}, expected {'0' * 64}"):
        download(f"{server.url}/f.bin", tmp_path / "f.bin", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_wrong_checksum(tmp_path) -> None:
    (tmp_path / "f.bin").write_bytes(b"something else")
    with pytest.raises(
        PrunekitError, match=re.escape(f"exists but its sha256 is not {_sha(PAYLOAD)}; delete it")
    ):
        download("http://127.0.0.1:9/never", tmp_path / "f.bin", _sha(PAYLOAD))


def test_http_error(server, tmp_path) -> None:
    with pytest.raises(
        PrunekitError, match=re.escape(f"download of {server.url}/nope failed: HTTP 404")
    ):
        download(f"{server.url}/nope", tmp_path / "nope", progress=False)


def test_extract_tar_gz(tmp_path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz({"top/x.txt": b"x", "top/sub/y.txt": b"yy"}))
    out = extract(archive, tmp_path / "out")
    assert (out / "top" / "x.txt").read_bytes() == b"x"
    assert (out / "top" / "sub" / "y.txt").read_bytes() == b"yy"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.txt", "member '../evil.txt' would be written outside"),
        ("top/../../evil.txt", "member 'top/../../evil.txt' would be written outside"),
        ("/tmp/evil.txt", "member '/tmp/evil.txt' would be written outside"),
        ("top/link -> ../../outside", "member 'top/link' links to 'top/../../outside', outside"),
    ],
)
def test_extract_rejects_escaping_members(tmp_path, member, message) -> None:
    name, _, link = member.partition(" -> ")
    archive = tmp_path / "bad.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("top/ok.txt"), io.BytesIO(b""))
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(PrunekitError, match=re.escape(message)):
        extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # checked before anything is written


def test_extract_zip_rejects_escaping_members(tmp_path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ok.txt", "ok")
        zipped.writestr("../evil.txt", "evil")
    with pytest.raises(
        PrunekitError, match=re.escape("member '../evil.txt' would be written outside")
    ):
        extract(archive, tmp_path / "out")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zipped:
        zipped.writestr("d/ok.txt", "ok")
    assert (extract(good, tmp_path / "out") / "d" / "ok.txt").read_text() == "ok"


def test_extract_errors(tmp_path) -> None:
    (tmp_path / "a.rar").touch()
    with pytest.raises(PrunekitError, match=re.escape("only .tgz, .tar.gz, .tar and .zip")):
        extract(tmp_path / "a.rar", tmp_path / "out")
    (tmp_path / "a.tgz").write_bytes(b"not a tar")
    with pytest.raises(PrunekitError, match="delete it and download it again"):
        extract(tmp_path / "a.tgz", tmp_path / "out")


def test_download_lfw_lays_out_what_lfw_reads(server, tmp_path) -> None:
    pairs = "1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n"
    server.files["/lfw.tgz"] = _tar_gz(
        {f"lfw/{name}.jpg": b"" for name in ["Ann/Ann_0001", "Ann/Ann_0002", "Bob/Bob_0001"]}
    )
    server.files["/pairs.txt"] = pairs.encode()
    sources = {
        "lfw.tgz": Source(f"{server.url}/lfw.tgz"),
        "pairs.txt": Source(f"{server.url}/pairs.txt", _sha(pairs.encode())),
    }
    root = download_lfw(tmp_path, sources=sources, progress=False)
    assert root == tmp_path / "lfw"
    assert len(LFW(root).pairs) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw", "lfw.tgz"]
    requests = len(server.ranges)
    assert download_lfw(tmp_path, sources=sources, progress=False) == root
    assert len(server.ranges) == requests  # everything already there
