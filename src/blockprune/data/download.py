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
no request. ``sha256: null`` means "trust on first use": the file's hash is written beside it
(``<file>.sha256``) on first download and enforced on every later use, and logged so it can be
pinned in the config.

What a download may do is bounded: ``https`` only (plain ``http`` only with a pinned sha256, or
to this machine's loopback address), a real host name (``http://../x.csv`` is refused), redirects
only within the same scheme and host, at most ``max_bytes`` (1 GiB) and ``deadline`` seconds (30
minutes) in all, retries included.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from blockprune.atomic import atomic_path
from blockprune.errors import ConfigError, DataError
from blockprune.redact import redact_text

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPEC_KEYS = {"url", "sha256"}
_CHUNK = 1 << 16
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
DEFAULT_CACHE = "~/.cache/blockprune"
MAX_BYTES = 1 << 30
DEADLINE_S = 1800.0
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LOOPBACK_NAMES = {"localhost"}


def _valid_host(host: str | None) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def _is_loopback(host: str | None) -> bool:
    try:
        return host in _LOOPBACK_NAMES or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_url(key: str, url: Any, sha256: str | None) -> None:
    """ConfigError unless ``url`` may be fetched: https (http only pinned or to loopback), a valid host, a file path."""
    shown = redact_text(str(url))
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}.url: must be an https URL, got {shown!r}.")
    try:
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise ConfigError(f"{key}.url: bad port in {shown!r}.") from None
    if not _valid_host(parts.hostname):
        raise ConfigError(f"{key}.url: {parts.hostname!r} is not a valid host name ({shown!r}).")
    if parts.scheme == "http" and sha256 is None and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{key}.url: plain http ({shown!r}) can be altered on the way; use https, or pin the file with "
            f"{key}.sha256=<64 hex digits>."
        )
    segments = [p for p in unquote(parts.path).split("/") if p]
    if not segments or any(p in (".", "..") for p in segments):
        raise ConfigError(f"{key}.url: must name a file (no '.'/'..' path parts), got {shown!r}.")


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
    sha = spec.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha.lower())):
        raise ConfigError(f"{key}.sha256: must be 64 hex digits or null, got {sha!r}.")
    check_url(key, url, sha)
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
    """A failure another attempt would not fix (HTTP 4xx, no name resolution, a refused redirect, too large)."""


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme and host (https -> http, or to another host, is refused)."""

    def __init__(self, origin: str) -> None:
        self.origin = urlsplit(origin)

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        new = urlsplit(newurl)
        if (new.scheme, new.hostname, new.port) != (self.origin.scheme, self.origin.hostname, self.origin.port):
            raise _Fatal(f"refused redirect (HTTP {code}) to another scheme or host: {redact_text(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


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
    max_bytes: int = MAX_BYTES,
    deadline: float = DEADLINE_S,
) -> Path:
    """Return the local path of ``url``, downloading and verifying it on first use.

    ``key`` is the config key the spec came from (named in errors). ``retries`` extra attempts
    follow a failed one after ``backoff * 2**i`` seconds; ``timeout`` bounds the connection
    and every read (not the whole transfer). An HTTP 4xx or a failed name lookup (offline) is
    not retried. ``max_bytes`` and ``deadline`` (seconds, all attempts together) bound the
    transfer. Raises DataError (nothing left in the cache) when it cannot get a verified file.
    """
    check_url(key, url, sha256)
    shown = redact_text(url)
    target = cache_path(cache_dir, url)
    if target.is_dir():  # another URL's cached files live under this name: never replaced
        raise DataError(
            f"{target}: the cache path of {key} ({shown}) is an existing folder; nothing was changed. Fix: set "
            f"data.download_dir to another folder (env BLOCKPRUNE_DATA_CACHE), or set {key}=<path of a local copy>."
        )
    if target.is_file():
        _verify(target, sha256, key, url, cached=True)
        return target
    try:
        return _fetch_new(
            url, sha256, target, key, retries, timeout, backoff, progress, max_bytes, time.monotonic() + deadline
        )
    except BaseException:
        _remove_empty_parents(target.parent, Path(cache_dir).expanduser())
        raise


def _fetch_new(
    url: str,
    sha256: str | None,
    target: Path,
    key: str,
    retries: int,
    timeout: float,
    backoff: float,
    progress: bool,
    max_bytes: int,
    end: float,
) -> Path:
    errors: list[str] = []
    with atomic_path(target) as tmp:  # a temporary folder beside target, removed unless renamed onto it
        for attempt in range(retries + 1):
            if attempt:
                pause = backoff * 2 ** (attempt - 1)
                if time.monotonic() + pause >= end:
                    errors.append("deadline reached before the next attempt")
                    raise _failure(url, target, key, errors)
                time.sleep(pause)
            try:
                _download(url, tmp, timeout, progress, target.name, max_bytes, end)
                break
            except _Retryable as err:
                errors.append(f"attempt {attempt + 1}: {err}")
                log.warning(
                    "download of %s failed (%s)%s", redact_text(url), err, "; retrying" if attempt < retries else ""
                )
            except _Fatal as err:
                errors.append(f"attempt {attempt + 1}: {err}")
                raise _failure(url, target, key, errors) from None
        else:
            raise _failure(url, target, key, errors)
        got = _verify(tmp, sha256, key, url, cached=False, target=target)
        if sha256 is None:  # trust on first use: the hash is recorded and enforced from now on
            _sidecar(target).write_text(got + "\n", encoding="ascii")
    log.info("downloaded %s -> %s", redact_text(url), target)
    return target


def _download(url: str, tmp: Path, timeout: float, progress: bool, name: str, max_bytes: int, end: float) -> None:
    """One attempt: continue ``tmp`` from its current size (Range) or start it over."""
    timeout = min(timeout, max(end - time.monotonic(), 0.001))
    have = tmp.stat().st_size if tmp.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "blockprune", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.build_opener(_SameOriginRedirects(url)).open(request, timeout=timeout)
    except _Fatal:
        raise
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
        if total is not None and total > max_bytes:
            raise _Fatal(f"the file is {total} bytes, over the limit of {max_bytes}")
        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            disable=not progress,
            leave=True,
        )
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
                    if got > max_bytes:
                        raise _Fatal(f"more than {max_bytes} bytes sent; stopped")
                    if time.monotonic() > end:
                        raise _Fatal(f"deadline reached after {got} bytes")
                    bar.update(len(block))
        finally:
            bar.close()
        if total is not None and got != total:
            raise _Retryable(f"connection lost after {got} of {total} bytes")


def _verify(path: Path, expected: str | None, key: str, url: str, cached: bool, target: Path | None = None) -> str:
    """Check ``path`` against ``expected`` (or, unpinned, the hash recorded beside it); return its hash."""
    shown = target or path
    url = redact_text(url)
    with open(path, "rb") as fh:
        head = fh.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        raise DataError(
            f"{shown}: is a Git LFS pointer, not the data ({url}). Fix: use the media URL "
            f"(https://media.githubusercontent.com/media/<owner>/<repo>/<branch>/<path>) in {key}.url"
            + (f", and delete {path}." if cached else ".")
        )
    got = sha256_of(path)
    recorded = _sidecar(path) if cached else None
    if expected is None and recorded is not None and recorded.is_file():
        expected = recorded.read_text(encoding="ascii").strip()
        if got != expected:
            raise DataError(
                f"{shown}: changed since its first download ({url}): recorded sha256 {expected} in {recorded}, "
                f"now {got}. Fix: delete {path} and {recorded} to download it again, or pin {key}.sha256."
            )
        return got
    if expected is None:
        if cached:  # put there by hand: trusted now, enforced from now on
            _sidecar(path).write_text(got + "\n", encoding="ascii")
        log.warning(
            "%s: no sha256 recorded for %s (%s); %s file has sha256=%s. To pin it, set %s.sha256=%s",
            shown,
            key,
            url,
            "cached" if cached else "downloaded",
            got,
            key,
            got,
        )
        return got
    if got != expected:
        fix = (
            f"delete {path} to download it again, or, if the published file changed on purpose, set {key}.sha256={got}"
            if cached
            else f"nothing was written to the cache; if the published file changed on purpose, set {key}.sha256={got}"
        )
        raise DataError(f"{shown}: sha256 mismatch for {key} ({url}): expected {expected}, got {got}. Fix: {fix}.")
    return got


def _failure(url: str, target: Path, key: str, tried: list[str]) -> DataError:
    url = redact_text(url)
    return DataError(
        f"could not download {key} from {url} ({'; '.join(tried)}). Nothing was written to the cache. "
        f"Fix: check the internet connection and {key}.url, then run again; "
        f"or download the file by hand and put it at {target} "
        f"(it is checked against {key}.sha256 and then used); or set {key}=<path of a local copy> "
        "(used as is, no network); the cache folder is data.download_dir (env BLOCKPRUNE_DATA_CACHE)."
    )


def resolve(key: str, value: Any, cache_dir: str | os.PathLike | None, **kw: Any) -> Any:
    """A plain path or None unchanged; a remote spec -> the local path of its verified download."""
    if not is_remote(value):
        return value
    spec = check_spec(key, value)
    return str(fetch(spec["url"], spec["sha256"], cache_dir or DEFAULT_CACHE, key=key, **kw))
