"""Decision indexes of the synthetic organizations, built once and kept under bench/.cache.

Compiling and indexing 10,000 organizations is ~20 ms each of pure Python (compiler,
Casbin load, index build): minutes of set-up for seconds of measurement. Worker
processes build them in chunks and send each chunk back pickled (zlib, ~6 KB an
organization); the chunks are also written to bench/.cache, keyed by a hash of every
source that shapes an index (generator, compiler, shared policy, index code, Python and
Casbin versions), so a later run only unpickles them (~1 ms an organization). What is
measured is unchanged: the same `OrgIndex` objects `load_org` builds. Compiled files
are written to the run's folder only for the organizations read from disk later
(`ensure_compiled`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import sys
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from authz.engine.index import OrgIndex, load_org
from bench import orgs

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"
GENERATOR_VERSION = 1  # bump when orgs.py output changes in a way the hash cannot see
CHUNK = 500
_SOURCES = ("bench/orgs.py", "authz/catalog.py", "authz/engine/index.py", "authz/policy",
            "authz/policies/shared")


def cache_key() -> str:
    """A hash of everything that decides what an index holds."""
    h = hashlib.sha256(f"{GENERATOR_VERSION}:{sys.version}:"
                       f"{importlib.metadata.version('pycasbin')}".encode())
    for rel in _SOURCES:
        base = REPO / rel
        files = sorted(base.rglob("*")) if base.is_dir() else [base]
        for f in files:
            if f.is_file() and f.suffix in (".py", ".yaml", ".yml", ".conf", ".csv"):
                h.update(str(f.relative_to(REPO)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _build(args: tuple[int, int, str]) -> bytes:
    """Worker: compile organizations a..b into a scratch folder and index them."""
    a, b, name = args
    with tempfile.TemporaryDirectory(prefix="authz-bench-build-") as tmp:
        out = Path(tmp)
        orgs.write_orgs(out, a, b, name=name)
        built = [load_org(out, orgs.org_name(n, name)) for n in range(a, b)]
    return zlib.compress(pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL), 1)


def indexes(count: int, name: str = "org", workers: int = 2) -> Iterator[OrgIndex]:
    """The indexes of organizations 0..count, in order: from the cache, else built."""
    folder = CACHE / f"index-{cache_key()}"
    chunks = [(a, min(count, a + CHUNK), name) for a in range(0, count, CHUNK)]
    paths = [folder / f"{name}-{a:05d}-{b:05d}.pz" for a, b, _ in chunks]
    missing = [c for c, p in zip(chunks, paths, strict=True) if not p.exists()]
    built: dict[tuple[int, int, str], bytes] = {}
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(workers) as pool:
            for chunk, blob in zip(missing, pool.map(_build, missing), strict=True):
                path = folder / f"{name}-{chunk[0]:05d}-{chunk[1]:05d}.pz"
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(blob)
                tmp.replace(path)  # a run killed half-way never leaves a torn chunk
                built[chunk] = blob
    for chunk, path in zip(chunks, paths, strict=True):
        blob = built.pop(chunk, None) or path.read_bytes()
        yield from pickle.loads(zlib.decompress(blob))


def ensure_compiled(out: Path, numbers: list[int], name: str = "org") -> None:
    """Compiled files of these organizations in `out` (for code that reads the disk)."""
    for n in numbers:
        if not (out / "orgs" / f"{orgs.org_name(n, name)}.json").exists():
            orgs.write_orgs(out, n, n + 1, name=name)
