"""`arks-model-cache`: the service, the one-shot download, and cache administration.

    arks-model-cache [serve]                 run the service (jobs from NATS)
    arks-model-cache download REPO [--revision R] [--allow P]... [--ignore P]...
                     [--cache-root DIR] [--local-dir DIR] [--pin] [--preload] ...
    arks-model-cache lease HOLDER --repo R (--commit C | --revision R) [--ttl S] [--pin]
    arks-model-cache release HOLDER
    arks-model-cache list [--json]
    arks-model-cache evict [--limit SIZE]

`download` is the container of the Kubernetes download Job: it runs the same job code
as the service, prints progress on stderr (at most one line per progress interval),
prints the result (a ModelCacheResult as JSON) on stdout and into the termination
log (`/dev/termination-log` when present, so the pod's status carries it), and exits
with a code that says what happened (see `EXIT_CODES`): a Job's `podFailurePolicy` can
fail at once on permanent codes and retry the others. SIGTERM stops the download at
the next chunk and exits 143.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ByteSize, SecretStr, TypeAdapter, ValidationError

from arks_common.events import (
    ModelCacheErrorKind,
    ModelCacheJob,
    ModelCacheProgress,
    ModelCacheResult,
)
from arks_model_cache import downloading
from arks_model_cache.caching import ModelCache
from arks_model_cache.handling import run_job
from arks_model_cache.layout import CacheLayout
from arks_model_cache.serving import job_options, root_path, serve
from arks_model_cache.settings import ModelCacheSettings
from arks_model_cache.specs import ModelSpec

EXIT_CODES: dict[ModelCacheErrorKind | None, int] = {
    None: 0,
    ModelCacheErrorKind.OTHER: 1,
    ModelCacheErrorKind.NOT_FOUND: 10,
    ModelCacheErrorKind.UNAUTHORIZED: 11,
    ModelCacheErrorKind.GATED: 12,
    ModelCacheErrorKind.REVISION_NOT_FOUND: 13,
    ModelCacheErrorKind.NETWORK: 20,
    ModelCacheErrorKind.DISK_FULL: 21,
}
"""0 ok; 1 other; 10-13 permanent (not found, unauthorized, gated, unknown revision);
20-21 transient (network, disk full); 2 usage; 143 terminated."""
EXIT_USAGE = 2
EXIT_TERMINATED = 143
TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _size(value: str) -> int:
    try:
        return int(TypeAdapter(ByteSize).validate_python(value))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"not a size: {value!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arks-model-cache", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")

    dl = sub.add_parser("download", help="make one model available in the cache, then exit")
    dl.add_argument("repo", help="Hub repository id, e.g. Qwen/Qwen2.5-7B-Instruct")
    dl.add_argument("--revision", help="branch, tag or commit (default: main)")
    dl.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    dl.add_argument("--allow", action="append", metavar="PATTERN", help="only matching files")
    dl.add_argument("--ignore", action="append", metavar="PATTERN", help="skip matching files")
    dl.add_argument("--cache-root", type=Path, help="cache root (default: ARKS_CACHE__ROOT)")
    dl.add_argument("--local-dir", type=Path, help="also place the files here (hard links)")
    dl.add_argument("--endpoint", help="Hub URL (default: ARKS_HUB__ENDPOINT, HF_ENDPOINT)")
    dl.add_argument("--proxy", help="HTTP(S) proxy for Hub traffic")
    dl.add_argument("--token-file", type=Path, help="file holding the Hub token")
    dl.add_argument("--offline", action="store_true", help="use only what is cached")
    dl.add_argument("--pin", action="store_true", help="never evict this model")
    dl.add_argument("--preload", action="store_true", help="read the files once afterwards")
    dl.add_argument("--namespace", default=os.environ.get("ARKS_NAMESPACE", "default"))
    dl.add_argument("--model-name", default=os.environ.get("ARKS_MODEL_NAME"))
    dl.add_argument("--job-id", default=os.environ.get("ARKS_JOB_ID"))
    dl.add_argument("--termination-log", type=Path, help=f"default: {TERMINATION_LOG} if present")
    dl.add_argument("--quiet", action="store_true", help="no progress lines")

    lease = sub.add_parser("lease", help="take (or renew) a lease on a cached snapshot")
    lease.add_argument("holder")
    lease.add_argument("--repo", required=True)
    lease.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    which = lease.add_mutually_exclusive_group()
    which.add_argument("--commit", help="the snapshot's commit")
    which.add_argument("--revision", help="resolved through the cache's refs")
    which.add_argument("--all-revisions", action="store_true", help="every snapshot of the repo")
    lease.add_argument("--ttl", type=float, help="seconds until it lapses (default: never)")
    lease.add_argument("--pin", action="store_true", help="mark as a pin")
    lease.add_argument("--pid", type=int, help="lapse when this local process exits")
    lease.add_argument("--cache-root", type=Path)

    release = sub.add_parser("release", help="release a lease")
    release.add_argument("holder")
    release.add_argument("--cache-root", type=Path)

    ls = sub.add_parser("list", help="list cached snapshots with size, last use and holders")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--cache-root", type=Path)

    evict = sub.add_parser("evict", help="evict unheld snapshots, least recently used first")
    evict.add_argument("--limit", type=_size, help="target size (default: the size limit)")
    evict.add_argument("--cache-root", type=Path)
    return parser


# ----------------------------------------------------------------------------- download


class ConsoleSink:
    """Progress on stderr; the result on stdout and in the termination log."""

    def __init__(self, *, quiet: bool, termination_log: Path | None) -> None:
        self._quiet = quiet
        self._termination_log = termination_log

    async def progress(self, event: ModelCacheProgress) -> None:
        if self._quiet:
            return
        pct = 100.0 * event.bytes_done / event.bytes_total if event.bytes_total else 0.0
        _err(
            f"progress {pct:5.1f}% {event.bytes_done}/{event.bytes_total} bytes "
            f"{event.files_done}/{event.files_total} files "
            f"{event.rate_bytes_per_s / 1e6:.1f} MB/s",
        )

    async def result(self, event: ModelCacheResult) -> None:
        line = event.model_dump_json()
        _out(line)
        if self._termination_log is not None:
            await asyncio.to_thread(_write_termination_log, self._termination_log, event)


def _write_termination_log(path: Path, event: ModelCacheResult) -> None:
    data = event.model_dump_json().encode()
    if len(data) > TERMINATION_LIMIT:
        spare = len(data) - TERMINATION_LIMIT + 3
        event = event.model_copy(update={"message": event.message[: -spare - 1] + "..."})
        data = event.model_dump_json().encode()[:TERMINATION_LIMIT]
    try:
        path.write_bytes(data)
    except OSError as exc:
        _err(f"cannot write the termination log {path}: {exc}")


def _download_settings(args: argparse.Namespace) -> ModelCacheSettings:
    settings = ModelCacheSettings()
    hub = settings.hub
    token = hub.token
    if args.token_file is not None:
        token = SecretStr(args.token_file.read_text().strip())
    hub = hub.model_copy(
        update={
            "endpoint": args.endpoint or hub.endpoint,
            "proxy": args.proxy or hub.proxy,
            "offline": args.offline or hub.offline,
            "token": token,
        }
    )
    cache = settings.cache
    if args.cache_root is not None:
        cache = cache.model_copy(update={"root": args.cache_root})
    return settings.model_copy(update={"hub": hub, "cache": cache})


def _model_name(repo: str) -> str:
    name = repo.rsplit("/", 1)[-1].lower()
    cleaned = "".join(c if c.isalnum() or c in "-." else "-" for c in name).strip("-.")
    return cleaned or "model"


async def _download(args: argparse.Namespace) -> int:
    settings = _download_settings(args)
    downloading.configure_http(settings.hub.proxy)
    termination_log = args.termination_log
    if termination_log is None and await asyncio.to_thread(TERMINATION_LOG.exists):
        termination_log = TERMINATION_LOG
    job = ModelCacheJob(
        id=args.job_id or f"download-{uuid.uuid4().hex[:12]}",
        namespace=args.namespace,
        model_name=args.model_name or _model_name(args.repo),
        repo_id=args.repo,
        repo_type=args.repo_type,
        revision=args.revision,
        allow_patterns=args.allow,
        ignore_patterns=args.ignore,
        cache_root=str(settings.cache.root),
        pin=args.pin,
        preload=args.preload,
    )
    options = job_options(settings, local_dir=args.local_dir.absolute() if args.local_dir else None)
    limit = settings.cache.size_limit
    sink = ConsoleSink(quiet=args.quiet, termination_log=termination_log)
    async with ModelCache.at(
        settings.cache.root,
        downloads=settings.downloads,
        size_limit=int(limit) if limit is not None else None,
    ) as cache:
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
        try:
            result = await run_job(job, cache, sink, options)
        except asyncio.CancelledError:
            _err("terminated: download stopped")
            return EXIT_TERMINATED
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_CODES.get(result.error_kind, 1)


# ----------------------------------------------------------------------------- administration


def _layout(args: argparse.Namespace) -> CacheLayout:
    root = args.cache_root or ModelCacheSettings().cache.root
    return CacheLayout.at(root_path(root))


async def _lease(args: argparse.Namespace) -> int:
    layout = _layout(args)
    commit: str | None = args.commit
    if args.revision is not None:
        spec = ModelSpec(args.repo, repo_type=args.repo_type, revision=args.revision)
        commit = downloading.read_ref(layout, spec)
        if commit is None:
            _err(f"{args.repo}@{args.revision} is not in the cache")
            return 1
    elif commit is None and not args.all_revisions:
        _err("give --commit, --revision or --all-revisions")
        return EXIT_USAGE
    async with ModelCache(layout) as cache:
        record = await cache.lease(
            args.holder,
            repo_type=args.repo_type,
            repo_id=args.repo,
            commit=commit,
            ttl_seconds=args.ttl,
            pinned=args.pin,
            pid=args.pid,
        )
    _out(record.model_dump_json())
    return 0


async def _release(args: argparse.Namespace) -> int:
    async with ModelCache(_layout(args)) as cache:
        released = await cache.release(args.holder)
    _err("released" if released else "no such lease")
    return 0 if released else 1


@dataclass(frozen=True)
class _Row:
    repo_type: str
    repo_id: str
    commit: str
    files: int
    size_bytes: int
    last_used_at: str
    pinned: bool
    holders: list[str]


async def _list(args: argparse.Namespace) -> int:
    async with ModelCache(_layout(args)) as cache:
        inventory = await cache.inventory()
        leases = await asyncio.to_thread(cache.leases.live)
    rows: list[_Row] = []
    for repo in inventory.repos:
        for snap in repo.snapshots:
            holders = [h for h in leases if h.covers(repo.repo_type, repo.repo_id, snap.commit)]
            rows.append(
                _Row(
                    repo_type=repo.repo_type,
                    repo_id=repo.repo_id,
                    commit=snap.commit,
                    files=snap.files,
                    size_bytes=sum(repo.blob_sizes.get(b, 0) for b in snap.blobs),
                    last_used_at=snap.last_used.isoformat(),
                    pinned=any(h.pinned for h in holders),
                    holders=sorted(h.holder for h in holders),
                )
            )
    if args.json:
        payload = {"total_bytes": inventory.total_bytes, "snapshots": [asdict(r) for r in rows]}
        _out(json.dumps(payload, indent=1))
        return 0
    _out(f"{'REPO':40} {'COMMIT':12} {'SIZE':>14} {'LAST USED (UTC)':19}  HOLDERS")
    for row in rows:
        used = datetime.fromisoformat(row.last_used_at).astimezone(UTC)
        _out(
            f"{row.repo_id:40} {row.commit[:12]:12} {row.size_bytes:>14} "
            f"{used:%Y-%m-%d %H:%M:%S}  {','.join(row.holders) or '-'}"
        )
    _out(f"total {inventory.total_bytes} bytes")
    return 0


async def _evict(args: argparse.Namespace) -> int:
    settings = ModelCacheSettings()
    limit = args.limit
    if limit is None and settings.cache.size_limit is not None:
        limit = int(settings.cache.size_limit)
    if limit is None:
        _err("give --limit or set ARKS_CACHE__SIZE_LIMIT")
        return EXIT_USAGE
    async with ModelCache(_layout(args)) as cache:
        report = await cache.evict(target_bytes=limit)
    for item in report.evicted:
        _out(f"evicted {item.repo_id}@{item.commit} ({item.freed_bytes} bytes)")
    _out(f"{report.before_bytes} -> {report.after_bytes} bytes (target {limit})")
    return 0 if report.satisfied else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command == "serve":
        serve()
        return 0
    runners = {
        "download": _download,
        "lease": _lease,
        "release": _release,
        "list": _list,
        "evict": _evict,
    }
    return asyncio.run(runners[command](args))
