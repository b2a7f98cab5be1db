"""Verified, cached downloads against a real HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from blockprune.data import TextClassificationDataModule
from blockprune.data.download import cache_path, check_spec, fetch
from blockprune.errors import ConfigError, DataError

CSV = (
    "Text,Label\n"
    + "".join(f"बातमी क्रमांक {i} {'शब्द ' * (i % 9)},{['Auto', 'Sports', 'Tech'][i % 3]}\n" for i in range(300))
).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` ({url path: bytes}); ``drops[path] = n`` cuts the next n responses mid-file;
    ``ranges`` False makes it ignore Range headers. ``requests`` logs (path, Range header)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, int] = {}
        self.ranges = True
        self.redirects: dict[str, str] = {}  # path -> Location
        self.slow: float = 0.0  # seconds between 1 KiB chunks
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                if self.path in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(rng[len("bytes=") :].split("-")[0]) if rng and outer.ranges else 0
                part = body[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if outer.drops.get(self.path, 0) > 0:
                    outer.drops[self.path] -= 1
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-file
                    return
                if outer.slow:
                    for i in range(0, len(part), 1024):
                        self.wfile.write(part[i : i + 1024])
                        self.wfile.flush()
                        time.sleep(outer.slow)
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.httpd.server_port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    srv.files["/mahanews/LDC/LDC_Train.csv"] = CSV
    yield srv
    srv.close()


def cached_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_first_download_shows_progress_and_then_comes_from_the_cache(server, tmp_path, capsys):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    path = fetch(url, sha(CSV), tmp_path)
    assert path == cache_path(tmp_path, url) and path.read_bytes() == CSV
    assert "LDC_Train.csv" in capsys.readouterr().err  # tqdm's progress bar
    assert len(server.requests) == 1
    assert fetch(url, sha(CSV), tmp_path) == path
    assert len(server.requests) == 1  # the second use made no request
    assert cached_files(tmp_path) == [path]  # no temporary files left beside it


def test_wrong_checksum_is_rejected_and_nothing_is_cached(server, tmp_path):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    with pytest.raises(DataError) as err:
        fetch(url, "0" * 64, tmp_path, key="data.train_file", progress=False)
    msg = str(err.value)
    assert "LDC_Train.csv" in msg and "0" * 64 in msg and sha(CSV) in msg and "data.train_file.sha256" in msg
    assert cached_files(tmp_path) == []


def test_corrupted_cache_file_is_rejected_naming_the_file_and_the_fix(server, tmp_path):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    path = fetch(url, sha(CSV), tmp_path, progress=False)
    path.write_bytes(CSV[:-10] + b"corrupted\n")
    with pytest.raises(DataError) as err:
        fetch(url, sha(CSV), tmp_path, key="data.train_file", progress=False)
    msg = str(err.value)
    assert str(path) in msg and f"expected {sha(CSV)}" in msg and "delete" in msg and "data.train_file.sha256" in msg
    assert len(server.requests) == 1


def test_dropped_connection_leaves_nothing_then_a_retry_resumes(server, tmp_path):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    server.drops["/mahanews/LDC/LDC_Train.csv"] = 1
    with pytest.raises(DataError, match="connection lost"):
        fetch(url, sha(CSV), tmp_path, retries=0, progress=False)
    assert cached_files(tmp_path) == []  # nothing half-written in the cache

    server.drops["/mahanews/LDC/LDC_Train.csv"] = 1
    path = fetch(url, sha(CSV), tmp_path, retries=2, backoff=0, progress=False)
    assert path.read_bytes() == CSV and cached_files(tmp_path) == [path]
    (_, first), (_, second) = server.requests[-2:]
    assert first is None and second == f"bytes={len(CSV) // 2}-"  # the retry resumed with Range


def test_server_without_range_support_restarts_the_file(server, tmp_path):
    server.ranges = False
    server.drops["/mahanews/LDC/LDC_Train.csv"] = 1
    path = fetch(server.url("/mahanews/LDC/LDC_Train.csv"), sha(CSV), tmp_path, backoff=0, progress=False)
    assert path.read_bytes() == CSV


def test_missing_remote_file_fails_without_retrying(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(server.url("/mahanews/LDC/nope.csv"), None, tmp_path, progress=False)
    assert len(server.requests) == 1 and cached_files(tmp_path) == []


def test_unpinned_file_is_used_its_hash_recorded_beside_it_and_enforced_afterwards(server, tmp_path, caplog):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    with caplog.at_level(logging.WARNING, logger="blockprune.data.download"):
        path = fetch(url, None, tmp_path, key="data.train_file", progress=False)
    assert path.read_bytes() == CSV
    assert f"data.train_file.sha256={sha(CSV)}" in caplog.text
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text().strip() == sha(CSV)
    assert fetch(url, None, tmp_path, key="data.train_file", progress=False) == path  # same file: used
    path.write_bytes(CSV.replace(b"Sports", b"Sp0rts"))  # changed in the cache after its first download
    with pytest.raises(DataError, match="changed since its first download") as err:
        fetch(url, None, tmp_path, key="data.train_file", progress=False)
    assert str(sidecar) in str(err.value) and len(server.requests) == 1


def test_plain_http_needs_a_pinned_hash_and_host_names_are_checked():
    pinned = "ab" * 32
    check_spec("data.file", {"url": "http://data.example.org/x.csv", "sha256": pinned})  # http + pinned: allowed
    check_spec("data.file", {"url": "https://data.example.org/x.csv"})
    with pytest.raises(ConfigError, match="https"):
        check_spec("data.file", {"url": "http://data.example.org/x.csv"})
    for url in (
        "http://../x.csv",
        "https://../x.csv",
        "https://a..b/x.csv",
        "https://-bad.org/x.csv",
        "https://h.org:99999/x.csv",
    ):
        with pytest.raises(ConfigError):
            check_spec("data.file", {"url": url, "sha256": pinned})


def test_redirects_stay_on_the_same_scheme_and_host(server, tmp_path):
    server.redirects["/moved.csv"] = "/mahanews/LDC/LDC_Train.csv"  # same host: followed
    path = fetch(server.url("/moved.csv"), sha(CSV), tmp_path, progress=False)
    assert path.read_bytes() == CSV
    for i, target in enumerate(
        (
            server.url("/mahanews/LDC/LDC_Train.csv", host="localhost"),
            "ftp://127.0.0.1/x.csv",
            "https://127.0.0.1/x.csv",
        )
    ):
        server.redirects[f"/away{i}.csv"] = target
        with pytest.raises(DataError, match="refused redirect"):
            fetch(server.url(f"/away{i}.csv"), sha(CSV), tmp_path / "other", progress=False)
    assert cached_files(tmp_path / "other") == []


def test_size_cap_and_overall_deadline_stop_a_download_and_cache_nothing(server, tmp_path):
    url = server.url("/mahanews/LDC/LDC_Train.csv")
    with pytest.raises(DataError, match="over the limit of 1000"):
        fetch(url, sha(CSV), tmp_path, max_bytes=1000, progress=False)
    assert len(server.requests) == 1  # not retried
    server.slow = 0.05  # about 0.05 s per KiB: the whole file would take over a second
    with pytest.raises(DataError, match="deadline"):
        fetch(url, sha(CSV), tmp_path, deadline=0.3, backoff=0, progress=False)
    assert cached_files(tmp_path) == []


def test_unreachable_host_fails_fast_saying_what_was_tried_and_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/LDC/LDC_Train.csv"
    with pytest.raises(DataError) as err:
        fetch(url, None, tmp_path / "cache", key="data.train_file", backoff=0, progress=False)  # default retries
    msg = str(err.value)
    assert "attempt 3: cannot connect" in msg and "attempt 4" not in msg  # bounded: 1 try + 2 retries
    assert url in msg and str(cache_path(tmp_path / "cache", url)) in msg and "data.train_file=" in msg
    assert "data.download_dir" in msg
    assert list((tmp_path / "cache").rglob("*")) == []  # not even the folders it made


def test_spec_is_checked_before_any_network_use():
    assert check_spec("data.val_file", {"url": "https://x.org/a/b.csv", "sha256": "AB" * 32})["sha256"] == "ab" * 32
    for bad, key in (
        ({"url": "ftp://x.org/a.csv"}, "url"),
        ({"url": "https://x.org/"}, "url"),
        ({"url": "https://x.org/a.csv", "sha256": "12"}, "sha256"),
        ({"url": "https://x.org/a.csv", "md5": "1"}, "unknown"),
    ):
        with pytest.raises(ConfigError, match=key):
            check_spec("data.val_file", bad)


def test_datamodule_downloads_remote_files_and_keeps_plain_paths(server, tmp_path, e5_path, write_rows, balanced_rows):
    val = write_rows("val.csv", balanced_rows({"Auto": 4, "Sports": 4, "Tech": 4}, prefix="वेगळी"))
    train_url = server.url("/mahanews/LDC/LDC_Train.csv")
    dm = TextClassificationDataModule(
        tokenizer=e5_path,
        train_file={"url": train_url, "sha256": sha(CSV)},
        val_file=str(val),
        max_length=32,
        download_dir=str(tmp_path / "dl"),
        cache_dir=str(tmp_path / "tok"),
        num_workers=0,
    )
    assert server.requests == []  # nothing is fetched before the data is prepared
    dm.prepare_data()
    assert dm.files["train"] == str(cache_path(tmp_path / "dl", train_url)) and dm.files["val"] == str(val)
    assert dm.report["remote"] == {"train_file": {"url": train_url, "sha256": sha(CSV)}}
    assert dm.num_labels == 3 and len(server.requests) == 1


@pytest.mark.parametrize("option", ["mahanews_ldc", "mahanews_lpc", "mahanews_shc_splits"])
def test_published_data_configs_name_remote_files_and_instantiate_offline(option, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from blockprune.config import CONFIG_DIR

    monkeypatch.setenv("BLOCKPRUNE_DATA_CACHE", str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={option}"])
    sub = option.split("_")[1].upper()
    assert cfg.data.download_dir == str(tmp_path) and cfg.data.file is None
    for key, name in (("train_file", "Train"), ("val_file", "Valid"), ("test_file", "Test")):
        assert cfg.data[key].url.endswith(f"/L3Cube-MahaNews/{sub}/{sub}_{name}.csv")
    dm = instantiate(cfg.data)  # no network: downloads happen in prepare_data
    assert set(dm.remote) == {"train_file", "val_file", "test_file"} and cached_files(tmp_path) == []
