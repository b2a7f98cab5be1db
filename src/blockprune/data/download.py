"""Verified, cached downloads of published data files (standard library + tqdm only).

A data file in the config may be a plain path (used as is, no network) or a *remote spec*::

    train_file:
      url: https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/LDC/LDC_Train.csv
      sha256: null        # or the 64 hex digits to check the file against

``fetch`` puts the file at ``cache_path(cache_dir, url)`` on first use: streamed with a tqdm
progress bar into a temporary name beside the target, retried on connection errors (resuming
with an HTTP ``Range`` request where the server honours it), checked against ``sha256``, and
only then renamed into place, so the cache never holds a half-written or unverified file. A
file already in the cache (downloaded before or put there by hand) is verified and used with
no request. ``sha256: null`` means "trust on first use": the file is used and its hash is
logged as a warning so it can be pinned in the config.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from blockprune.atomic import atomic_path
from blockprune.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPEC_KEYS = {"url", "sha256"}
_CHUNK = 1 << 16
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
DEFAULT_CACHE = "~/.cache/blockprune"


def is_remote(value: Any) -> bool:
    """True for a remote spec (a mapping with a ``url``), False for a plain path or None."""
    return isinstance(value, Mapping)


def check_spec(key: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a remote spec before any network use; ConfigError naming ``key`` otherwise."""
    spec = dict(spec)
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; a remote file has only {sorted(_SPEC_KEYS)}.")
    url = spec.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"{key}.url: must be an http(s) URL, got {url!r}.")
    parts = [p for p in unquote(urlsplit(url).path).split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ConfigError(f"{key}.url: must name a file (no '.'/'..' path parts), got {url!r}.")
    sha = spec.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha.lower())):
        raise ConfigError(f"{key}.sha256: must be 64 hex digits or null, got {sha!r}.")
    return {"url": url, "sha256": sha.lower() if sha else None}


def cache_path(cache_dir: str | os.PathLike, url: str) -> Path:
    """Where ``url`` is cached: ``<cache_dir>/<host>[_<port>]/<url path>`` (``~`` expanded)."""
    parts = urlsplit(url)
    host = f"{parts.hostname}_{parts.port}" if parts.port else str(parts.hostname)
    return Path(cache_dir).expanduser().joinpath(host, *[p for p in unquote(parts.path).split("/") if p])


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Retryable(Exception):
    """A failure worth another attempt (connection refused/reset, timeout, 5xx, short read)."""


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """Remove the folders a failed download created (empty ones only, up to ``root``)."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


class _Fatal(Exception):
    """A failure another attempt would not fix (HTTP 4xx, no name resolution)."""


def fetch(
    url: str,
    sha256: str | None,
    cache_dir: str | os.PathLike = DEFAULT_CACHE,
    *,
    key: str = "data file",
    retries: int = 2,
    timeout: float = 10.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Return the local path of ``url``, downloading and verifying it on first use.

    ``key`` is the config key the spec came from (named in errors). ``retries`` extra attempts
    follow a failed one after ``backoff * 2**i`` seconds; ``timeout`` bounds the connection
    and every read (not the whole transfer). An HTTP 4xx or a failed name lookup (offline) is
    not retried. Raises DataError (nothing left in the cache) when it cannot get a verified file.
    """
    target = cache_path(cache_dir, url)
    if target.is_dir():  # another URL's cached files live under this name: never replaced
        raise DataError(
            f"{target}: the cache path of {key} ({url}) is an existing folder; nothing was changed. Fix: set "
            f"data.download_dir to another folder (env BLOCKPRUNE_DATA_CACHE), or set {key}=<path of a local copy>."
        )
    if target.is_file():
        _verify(target, sha256, key, url, cached=True)
        return target
    try:
        return _fetch_new(url, sha256, target, key, retries, timeout, backoff, progress)
    except BaseException:
        _remove_empty_parents(target.parent, Path(cache_dir).expanduser())
        raise


def _fetch_new(
    url: str, sha256: str | None, target: Path, key: str, retries: int, timeout: float, backoff: float, progress: bool
) -> Path:
    errors: list[str] = []
    with atomic_path(target) as tmp:  # a temporary folder beside target, removed unless renamed onto it
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                _download(url, tmp, timeout, progress, target.name)
                break
            except _Retryable as err:
                errors.append(f"attempt {attempt + 1}: {err}")
                log.warning("download of %s failed (%s)%s", url, err, "; retrying" if attempt < retries else "")
            except _Fatal as err:
                errors.append(f"attempt {attempt + 1}: {err}")
                raise _failure(url, target, key, errors) from None
        else:
            raise _failure(url, target, key, errors)
        _verify(tmp, sha256, key, url, cached=False, target=target)
    log.info("downloaded %s -> %s", url, target)
    return target


def _download(url: str, tmp: Path, timeout: float, progress: bool, name: str) -> None:
    """One attempt: continue ``tmp`` from its current size (Range) or start it over."""
    have = tmp.stat().st_size if tmp.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "blockprune", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: start over
            tmp.unlink()
            raise _Retryable(f"HTTP 416 on resume at byte {have}") from None
        if err.code >= 500 or err.code == 429:
            raise _Retryable(f"HTTP {err.code} {err.reason}") from None
        raise _Fatal(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, socket.gaierror):
            raise _Fatal(f"cannot resolve host ({err.reason}); no internet?") from None
        raise _Retryable(f"cannot connect ({err.reason})") from None
    except (OSError, ValueError, http.client.HTTPException) as err:  # timeouts, resets, bad responses
        raise _Retryable(f"{type(err).__name__}: {err}") from None
    with resp:
        status = getattr(resp, "status", 200)
        resumed = have > 0 and status == 206 and (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-")
        if have and status == 206 and not resumed:  # a range we did not ask for: start over
            tmp.unlink()
            raise _Retryable(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        if not resumed:
            have = 0  # the server ignored Range and sends the whole file
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=name, disable=not progress, leave=True)
        got = have
        try:
            with open(tmp, "ab" if resumed else "wb") as fh:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as err:  # resets, IncompleteRead, timeouts
                        raise _Retryable(f"connection lost after {got} bytes ({type(err).__name__}: {err})") from None
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
        if total is not None and got != total:
            raise _Retryable(f"connection lost after {got} of {total} bytes")


def _verify(path: Path, expected: str | None, key: str, url: str, cached: bool, target: Path | None = None) -> None:
    """Check ``path`` against ``expected``; warn with the hash when nothing is recorded."""
    shown = target or path
    with open(path, "rb") as fh:
        head = fh.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        raise DataError(
            f"{shown}: is a Git LFS pointer, not the data ({url}). Fix: use the media URL "
            f"(https://media.githubusercontent.com/media/<owner>/<repo>/<branch>/<path>) in {key}.url"
            + (f", and delete {path}." if cached else ".")
        )
    got = sha256_of(path)
    if expected is None:
        log.warning(
            "%s: no sha256 recorded for %s (%s); %s file has sha256=%s. To pin it, set %s.sha256=%s",
            shown, key, url, "cached" if cached else "downloaded", got, key, got,
        )
        return
    if got != expected:
        fix = (
            f"delete {path} to download it again, or, if the published file changed on purpose, set {key}.sha256={got}"
            if cached
            else f"nothing was written to the cache; if the published file changed on purpose, set {key}.sha256={got}"
        )
        raise DataError(
            f"{shown}: sha256 mismatch for {key} ({url}): expected {expected}, got {got}. Fix: {fix}."
        )


def _failure(url: str, target: Path, key: str, tried: list[str]) -> DataError:
    return DataError(
        f"could not download {key} from {url} ({'; '.join(tried)}). Nothing was written to the cache. "
        f"Fix: check the internet connection and {key}.url, then run again; or download the file by hand and put it at {target} "
        f"(it is checked against {key}.sha256 and then used); or set {key}=<path of a local copy> "
        "(used as is, no network); the cache folder is data.download_dir (env BLOCKPRUNE_DATA_CACHE)."
    )


def resolve(key: str, value: Any, cache_dir: str | os.PathLike | None, **kw: Any) -> Any:
    """A plain path or None unchanged; a remote spec -> the local path of its verified download."""
    if not is_remote(value):
        return value
    spec = check_spec(key, value)
    return str(fetch(spec["url"], spec["sha256"], cache_dir or DEFAULT_CACHE, key=key, **kw))
