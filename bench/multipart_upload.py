"""A 1.5 GB file from object storage, through a multipart upload, to a ready asset and a gist.

Runs ``CreateAssetOperator`` (the whole ingest path: validation, durable create, the multipart
engine, the wait for ``ready``) against the emulator, then generates the asset's gist, for the
same sparse file read through two ``ObjectStoragePath`` schemes:

* ``file``: a plain local path;
* ``s3``: the file in an S3 bucket served by moto on 127.0.0.1, read through s3fs (real ranged
  GETs over HTTP, the code path of a real bucket). The network forbids real S3 and GCS here, and
  ``memory://`` would hold 1.5 GB in the very process whose memory is measured. moto runs in a
  child process, so its memory is not counted. This leg needs ``s3fs`` and ``moto[server]``,
  which are not dependencies of the provider; without them it is skipped, saying so (docs/ingest.md
  shows how to run it from a side venv that leaves .venv alone).

Memory is this process's peak RSS (``VmHWM``, reset before each upload) minus its RSS before
the upload, as a multiple of the chunk size. The emulator runs in this process (as
``start_emulator`` does) and its share is counted too, so the figure is an upper bound for the
client. Throughput is the file's size over the time from ``execute()`` to a ready asset.

    .venv/bin/python bench/multipart_upload.py [--size-mb 1536] [--chunk-mb 5] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

API_KEY = "tlk_bench_multipart_key_0123"
BUCKET = "gist-bench"
FILENAME = "harbour_long_take.mp4"
MIB = 1024 * 1024


def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sparse_file(folder: Path, size: int) -> Path:
    path = folder / FILENAME
    with path.open("wb") as handle:
        handle.write(b"\x00\x00\x00\x18ftypmp42")  # a plausible MP4 start; the rest is a hole
        handle.truncate(size)
    return path


class Moto:
    """An S3 endpoint on 127.0.0.1 (moto's server, in a child process) holding the file."""

    def __init__(self, source: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # Seeded from a child process, so s3fs's upload buffers never count in this one.
        seed = (
            "import boto3, s3fs, sys\n"
            "url, src, dst = sys.argv[1:4]\n"
            "kw = dict(aws_access_key_id='bench', aws_secret_access_key='bench', region_name='us-east-1')\n"
            "boto3.client('s3', endpoint_url=url, **kw).create_bucket(Bucket=dst.split('/')[0])\n"
            "s3fs.S3FileSystem(key='bench', secret='bench', client_kwargs={'endpoint_url': url})"
            ".put_file(src, dst)\n"
        )
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", seed, self.url, str(source), f"{BUCKET}/catalog/{FILENAME}"], check=True
        )
        print(f"  (seeded s3://{BUCKET}/catalog/{FILENAME} in moto in {time.perf_counter() - started:.0f}s)")

    def path(self) -> Any:
        import s3fs
        from airflow.sdk import ObjectStoragePath
        from airflow.sdk.io import attach

        # What a deployment without the Amazon provider does: attach an fsspec filesystem.
        creds = {"key": "bench", "secret": "bench"}  # moto takes any
        attach("s3", fs=s3fs.S3FileSystem(**creds, client_kwargs={"endpoint_url": self.url}))
        return ObjectStoragePath(f"s3://{BUCKET}/catalog/{FILENAME}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def one_leg(scheme: str, file_path: Any, emu: Any, args: argparse.Namespace, size: int) -> dict[str, Any]:
    import requests
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.operators.ingest import CreateAssetOperator

    requests.post(f"{emu.url}/_emulator/reset", timeout=10).raise_for_status()
    op = CreateAssetOperator(
        task_id=f"bench_{scheme}",
        file_path=file_path,
        upload_concurrency=args.concurrency,
        multipart_threshold=args.threshold_mb * MIB,
        poll_interval=0.2,
        asset_timeout=120,
    )
    # Warm up what any first call pays once (the storage client, its imports): not the upload's.
    probe = ObjectStoragePath(file_path) if isinstance(file_path, str) else file_path
    probe.stat()
    with probe.open("rb") as handle:
        handle.read(1)
    before = rss_bytes("VmRSS")
    reset_peak()
    started = time.perf_counter()
    out = op.execute({})
    elapsed = time.perf_counter() - started
    peak = rss_bytes("VmHWM")
    gist = GistHook().generate_gist(asset_id=out["asset_id"], types=["title", "hashtag"])
    (session,) = requests.get(f"{emu.url}/_emulator/uploads", timeout=10).json()["uploads"]
    if not (out["status"] == "ready" and session["completed"] and session["total_size"] == size):
        raise RuntimeError(f"the upload did not end as expected: {out}, {session}")
    if sorted(session["chunk_puts"].values()) != [1] * session["total_chunks"]:
        raise RuntimeError("some chunk was not sent exactly once")
    chunk = int(session["chunk_size"])
    return {
        "scheme": scheme,
        "file_path": str(file_path),
        "size_bytes": size,
        "chunk_size": chunk,
        "chunks": session["total_chunks"],
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 1),
        "throughput_mib_s": round(size / MIB / elapsed, 1),
        "rss_before_mib": round(before / MIB, 1),
        "peak_rss_growth_mib": round((peak - before) / MIB, 1),
        "peak_growth_chunks": round((peak - before) / chunk, 2),
        "asset_id": out["asset_id"],
        "gist_title": gist.title,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1536, help="file size in MiB (default 1536: 1.5 GiB)")
    parser.add_argument("--chunk-mb", type=int, default=5, help="the emulator's chunk size in MiB")
    parser.add_argument("--concurrency", type=int, default=4, help="upload_concurrency")
    parser.add_argument("--threshold-mb", type=int, default=100, help="multipart_threshold in MiB")
    parser.add_argument("--schemes", default="file,s3", help="comma-separated: file, s3")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="gist-bench-mp-"))
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["NO_PROXY"] = "*"
    from airflow_provider_gist.emulator.server import start_emulator

    size = args.size_mb * MIB
    video = sparse_file(home, size)
    results: list[dict[str, Any]] = []
    moto: Moto | None = None
    emu = start_emulator(api_key=API_KEY, asset_ready_seconds=0.5, multipart_chunk_size=args.chunk_mb * MIB)
    try:
        os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
            {"conn_type": "twelvelabs", "host": emu.url, "password": API_KEY}
        )
        for scheme in args.schemes.split(","):
            if scheme == "file":
                results.append(one_leg("file", str(video), emu, args, size))
            elif scheme == "s3":
                try:
                    import moto as _moto  # noqa: F401
                    import s3fs  # noqa: F401
                except ImportError:
                    print("s3: skipped (needs `pip install s3fs 'moto[server]'`, not provider dependencies)")
                    continue
                moto = Moto(video)
                results.append(one_leg("s3", moto.path(), emu, args, size))
            else:
                raise SystemExit(f"unknown scheme {scheme!r}")
    finally:
        emu.stop()
        if moto is not None:
            moto.stop()
        shutil.rmtree(home, ignore_errors=True)

    print(
        f"\nmultipart upload of {args.size_mb} MiB, emulator chunk {args.chunk_mb} MiB, "
        f"upload_concurrency {args.concurrency} (python {sys.version.split()[0]}, {os.cpu_count()} cores)"
    )
    header = (
        f"{'scheme':<6} {'chunks':>6} {'seconds':>8} {'MiB/s':>7} {'peak RSS growth':>16} {'x chunk':>8}"
        "  gist title"
    )
    print(header)
    for r in results:
        print(
            f"{r['scheme']:<6} {r['chunks']:>6} {r['seconds']:>8} {r['throughput_mib_s']:>7} "
            f"{r['peak_rss_growth_mib']:>12} MiB {r['peak_growth_chunks']:>8}  {r['gist_title']}"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
