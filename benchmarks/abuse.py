"""Benchmark: ordinary requests' latency while abusive ones are refused (issue 18, item 1 and 4).

One ``provender serve`` process (one worker, SQLite online store, as ``tests/abuse/``) answers an
ordinary client (one keep-alive HTTP connection, one request every 10 ms, 1 entity x 1 feature)
in three phases of ``--seconds`` each:

- ``quiet``: the ordinary client alone (the peer: the same server, the same run);
- ``abuse``: plus ``--abusers`` processes (default 2), each cycling through the probe's abusive
  requests: 300,000 refs in a 6.6 MB body, a 30 MB body, JSON nested 900 deep, gRPC messages of
  50,000 refs with 20 MB of values, of 300,000 refs (6 MB, under the size limit) and of 1,000,000
  entity rows (8 MB), the same kinds under the 1 MiB size limit (45,000 refs over HTTP and gRPC,
  450,000 rows over gRPC), an endless header and a slow one (3 s): the probe's mix;
- ``flood`` (beyond the probe's scenario): the abusers send only the requests refused by their
  counts (and the 6.3 MB one refused by its size), back to back.

Each abuser is a separate process, at nice 10, with its payloads built once, so the ordinary
client's latency measures the server, not the load generator's own interpreter or CPU (on one
machine the abusers stand for clients elsewhere). ``--peer NAME=SRC`` measures a server importing
provender from another source tree too (e.g. a checkout from before a change), interleaved. Reported per phase:
ordinary p50 / p99 / max, the server's peak RSS (sampled at each ordinary request), and the
abusive requests sent and how they were answered. ``--runs`` (default 3) repetitions, medians.

Usage::

    .venv/bin/python benchmarks/abuse.py            # 3 runs of 3 x 10 s, about 2 minutes
    .venv/bin/python benchmarks/abuse.py --quick    # 1 run of 3 x 4 s

Writes ``benchmarks/results/abuse.json`` and ``benchmarks/results/abuse.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))

from _services import free_port, provender_process  # noqa: E402

RESULTS = HERE / "results"
TARGET_P99_MS = 50.0
ABUSER_NICE = 10
TARGET_RSS_MIB = 300.0
GRPC_METHOD = "/provender.serving.v1.ServingService/GetOnlineFeatures"
ATTACKS = (
    "http_many_refs",
    "http_huge_body",
    "http_deep_nesting",
    "grpc_big_message",
    "grpc_many_refs",
    "grpc_many_rows",
    "http_refs_under_size",
    "grpc_refs_under_size",
    "grpc_rows_under_size",
    "endless_header",
    "slow_header",
)
PHASES = ("quiet", "abuse", "flood")
FLOOD = ("http_refs_under_size", "grpc_refs_under_size", "grpc_rows_under_size", "http_many_refs")
ORDINARY = b'{"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}'


def setup(directory: Path) -> Path:
    """Write a project (SQLite registry and online store) holding one value; return its config."""
    from datetime import timedelta

    import pyarrow as pa
    import yaml

    import provender as pv

    config = directory / "provender.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registry": "sqlite:///registry.db",
                "online": {"store": "sqlite", "path": "online.db"},
                "serving": {"header_timeout_seconds": 2.0},
            }
        )
    )
    driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
    table = pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64)],
        batch_source=pv.FileSource(path="stats.parquet", event_timestamp_column="ts"),
    )
    now = datetime.now(UTC)
    rows = pa.table(
        {
            "driver_id": pa.array([1], pa.int64()),
            "trips": pa.array([2], pa.int64()),
            "event_timestamp": pa.array([now - timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
        }
    )
    with pv.Client(config) as client:
        client.apply([driver, table])
        client._online_store.write(table, rows)
    return config


# -- the abusive requests (built once per abuser process)


def _payloads(kinds: tuple[str, ...]) -> dict[str, bytes]:
    import orjson

    from provender.wire._proto import serving_pb2 as pb

    def grpc_message(refs: int, rows: int, note_bytes: int) -> bytes:
        request = pb.GetOnlineFeaturesRequest(features=["driver_stats:trips"] * refs)
        column = request.entities.add(name="driver_id")
        column.int64_values.values.extend([1] * rows)
        if note_bytes:
            note = request.entities.add(name="note")
            note.string_values.values.extend(["y" * 1000] * (note_bytes // 1000))
        return request.SerializeToString()

    deep = b'{"features": ["driver_stats:trips"], "entities": {"driver_id": [1], "n": ['
    builders: dict[str, Callable[[], bytes]] = {
        "http_many_refs": lambda: orjson.dumps(
            {"features": ["driver_stats:trips"] * 300_000, "entities": {"driver_id": [1]}}
        ),
        "http_huge_body": lambda: orjson.dumps(
            {"features": ["driver_stats:trips"], "entities": {"driver_id": [1], "note": ["x" * 30_000_000]}}
        ),
        "http_deep_nesting": lambda: deep + b"[" * 900 + b"]" * 900 + b"]}}",
        "grpc_big_message": lambda: grpc_message(50_000, 20_000, 20_000_000),
        "grpc_many_refs": lambda: grpc_message(300_000, 1, 0),
        "grpc_many_rows": lambda: grpc_message(1, 1_000_000, 0),
        # Under the default 1 MiB size limit: refused by the counts, before any element is decoded.
        "http_refs_under_size": lambda: orjson.dumps(
            {"features": ["driver_stats:trips"] * 45_000, "entities": {"driver_id": [1]}}
        ),
        "grpc_refs_under_size": lambda: grpc_message(45_000, 1, 0),
        "grpc_rows_under_size": lambda: grpc_message(1, 450_000, 0),
    }
    return {kind: build() for kind, build in builders.items() if kind in kinds}


def _post(port: int, body: bytes) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/v1/online-features", body=body)
        return str(connection.getresponse().status)
    except OSError as exc:
        return type(exc).__name__
    finally:
        connection.close()


def _grpc(port: int, message: bytes) -> str:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(GRPC_METHOD, request_serializer=None, response_deserializer=None)
        try:
            call(message, timeout=30)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return "OK"


def _endless_header(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nx: ")
            for _ in range(2000):
                sock.sendall(b"z" * 4096)
        except OSError:
            return "closed"
    return "accepted"


def _slow_header(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
        time.sleep(3)
    return "sent"


def abuser(
    http_port: int,
    grpc_port: int,
    kinds: tuple[str, ...],
    ready: Event,
    stop: Event,
    results: multiprocessing.Queue[dict[str, int]],
) -> None:
    """Cycle through the abusive requests until ``stop``; put ``{kind:outcome: count}`` on ``results``."""
    os.nice(ABUSER_NICE)
    payloads = _payloads(kinds)
    ready.set()
    outcomes: Counter[str] = Counter()
    attacks: list[tuple[str, Callable[[], str]]] = [
        ("http_many_refs", lambda: _post(http_port, payloads["http_many_refs"])),
        ("http_huge_body", lambda: _post(http_port, payloads["http_huge_body"])),
        ("http_deep_nesting", lambda: _post(http_port, payloads["http_deep_nesting"])),
        ("grpc_big_message", lambda: _grpc(grpc_port, payloads["grpc_big_message"])),
        ("grpc_many_refs", lambda: _grpc(grpc_port, payloads["grpc_many_refs"])),
        ("grpc_many_rows", lambda: _grpc(grpc_port, payloads["grpc_many_rows"])),
        ("http_refs_under_size", lambda: _post(http_port, payloads["http_refs_under_size"])),
        ("grpc_refs_under_size", lambda: _grpc(grpc_port, payloads["grpc_refs_under_size"])),
        ("grpc_rows_under_size", lambda: _grpc(grpc_port, payloads["grpc_rows_under_size"])),
        ("endless_header", lambda: _endless_header(http_port)),
        ("slow_header", lambda: _slow_header(http_port)),
    ]
    attacks = [(kind, attack) for kind, attack in attacks if kind in kinds]
    while not stop.is_set():
        for kind, attack in attacks:
            if stop.is_set():
                break
            try:
                outcome = attack()
            except OSError as exc:
                outcome = type(exc).__name__
            outcomes[f"{kind}:{outcome}"] += 1
    results.put(dict(outcomes))


# -- the ordinary client


def rss_mib(pid: int) -> float:
    """The resident memory of ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) ``pid`` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ordinary(port: int, server_pid: int, seconds: float) -> dict[str, float]:
    """Send the ordinary request every 10 ms for ``seconds``; return its latency figures and peak RSS."""
    cpu_before = cpu_seconds(server_pid)
    latencies: list[float] = []
    peak = 0.0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/online-features", body=ORDINARY)
            response = connection.getresponse()
            response.read()
        except OSError:  # the server closed the keep-alive connection: reconnect, and count it
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"an ordinary request got {response.status}")
        peak = max(peak, rss_mib(server_pid))
        time.sleep(0.01)
    connection.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "peak_rss_mib": peak,
        "server_cpu_share": (cpu_seconds(server_pid) - cpu_before) / seconds,
    }


def server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the single worker)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
    raise RuntimeError(f"no process listens on {port}")


def abused(
    http_port: int, grpc_port: int, pid: int, kinds: tuple[str, ...], args: argparse.Namespace
) -> dict[str, object]:
    """Measure the ordinary client while ``args.abusers`` processes send ``kinds``; return figures and outcomes."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    readies = [context.Event() for _ in range(args.abusers)]
    abusers = [
        context.Process(target=abuser, args=(http_port, grpc_port, kinds, ready, stop, results)) for ready in readies
    ]
    for process in abusers:
        process.start()
    for ready in readies:  # the abusers build their payloads first
        ready.wait(120)
    figures: dict[str, object] = dict(ordinary(http_port, pid, args.seconds))
    stop.set()
    outcomes: Counter[str] = Counter()
    for _ in abusers:
        outcomes.update(results.get(timeout=60))
    for process in abusers:
        process.join(60)
    figures["abusive_requests"] = dict(sorted(outcomes.items()))
    figures["abusive_per_second"] = sum(outcomes.values()) / args.seconds
    return figures


def one_run(config: Path, args: argparse.Namespace, source: str | None) -> dict[str, object]:
    """Start a server (importing provender from ``source`` if given); measure its phases; stop it."""
    http_port, grpc_port = free_port(), free_port()
    serve = ("serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--workers", "1")
    saved = os.environ.get("PYTHONPATH")
    if source is not None:
        os.environ["PYTHONPATH"] = source
    try:
        with provender_process(config, *serve, port=http_port):
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
            pid = server_pid(http_port)
            run: dict[str, object] = {"quiet": ordinary(http_port, pid, args.seconds)}
            run["abuse"] = abused(http_port, grpc_port, pid, args.attacks, args)
            if not args.no_flood:
                run["flood"] = abused(http_port, grpc_port, pid, FLOOD, args)
            run["server_alive"] = Path(f"/proc/{pid}").exists()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return run


def median_of(runs: list[dict[str, object]], phase: str, field: str) -> float:
    """The median of one figure over the runs."""
    values = sorted(float(run[phase][field]) for run in runs)  # type: ignore[index]
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


FIELDS = ("requests", "p50_ms", "p99_ms", "max_ms", "peak_rss_mib", "server_cpu_share")


def write_report(result: dict[str, object]) -> None:
    """Write ``abuse.json`` and ``abuse.md``."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "abuse.json").write_text(json.dumps(result, indent=2) + "\n")
    runs: dict[str, list[dict[str, object]]] = result["runs"]  # type: ignore[assignment]
    medians: dict[str, dict[str, dict[str, float]]] = result["medians"]  # type: ignore[assignment]
    ours = medians["provender"]["abuse"]
    lines = [
        "# Abuse benchmark",
        "",
        f"`benchmarks/abuse.py`, {result['date']}: {result['machine']}. {result['runs_per_contender']} run(s) "
        f"per contender, interleaved, each a fresh server (one worker, SQLite online store) measured "
        f"{result['seconds']:.0f} s quiet, then {result['seconds']:.0f} s per abuse phase with "
        f"{result['abusers']} abusive processes (at nice {ABUSER_NICE}: on one machine they stand for "
        "clients elsewhere, and should not take the server's CPU); medians over runs. 1-minute load average "
        f"at the start of each run: {result['loads']}. The machine is shared with other work (2 cores) and "
        "the figures were taken under that load: the quiet phase's p99 shows how much of a p99 is the "
        "machine's.",
        "",
        "| contender | phase | ordinary requests | p50 ms | p99 ms | max ms | server peak RSS MiB | server CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for contender, phases in medians.items():
        for phase, figures in phases.items():
            lines.append(
                f"| {contender} | {phase} | {figures['requests']:.0f} | {figures['p50_ms']:.2f} | "
                f"{figures['p99_ms']:.2f} | {figures['max_ms']:.1f} | {figures['peak_rss_mib']:.0f} | "
                f"{figures['server_cpu_share']:.2f} |"
            )
    lines += [
        "",
        f"Target: p99 of ordinary requests under abuse < {TARGET_P99_MS:.0f} ms: "
        f"{'met' if ours['p99_ms'] < TARGET_P99_MS else 'MISSED'} ({ours['p99_ms']:.1f} ms); "
        f"server RSS < {TARGET_RSS_MIB:.0f} MiB: {'met' if ours['peak_rss_mib'] < TARGET_RSS_MIB else 'MISSED'} "
        f"({ours['peak_rss_mib']:.0f} MiB).",
        "",
        "`abuse` is the abuse probe's mix, the scenario of the targets. `flood` (abusers sending only the requests",
        "refused by their counts, and the 6.3 MB one refused by its size, back to back) is beyond it: it",
        "shows the cost per refused request. A peer, if listed, is the same benchmark against another",
        "source tree (`--peer NAME=SRC`, e.g. the code before the change), in the same runs.",
        "",
        "Per run: p99 ms per phase; abusive requests per second and how they were answered:",
        "",
    ]
    for contender, contender_runs in runs.items():
        for index, run in enumerate(contender_runs, 1):
            measured = [phase for phase in PHASES if phase in run]
            p99s = " / ".join(f"{phase} {run[phase]['p99_ms']:.2f}" for phase in measured)  # type: ignore[index]
            lines.append(f"- {contender} run {index}: {p99s}")
            for phase in measured[1:]:
                abuse = run[phase]
                assert isinstance(abuse, dict)  # measure()'s figures
                lines.append(f"  - {phase}: {abuse['abusive_per_second']:.0f}/s, {abuse['abusive_requests']}")
    (RESULTS / "abuse.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    """Run the benchmark; print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--abusers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 run of 3 x 4 s; results not written")
    parser.add_argument("--no-flood", action="store_true", help="skip the flood phase")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="a comma-separated subset of: %(default)s")
    parser.add_argument("--peer", action="append", default=[], help="NAME=SRC: also measure provender from SRC")
    args = parser.parse_args()
    args.attacks = tuple(args.attacks.split(","))
    if args.quick:
        args.runs, args.seconds = 1, 4.0
    contenders: dict[str, str | None] = {"provender": None}
    for peer in args.peer:
        name, _, source = peer.partition("=")
        contenders[name] = str(Path(source).resolve())
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in contenders}
    loads = []
    with tempfile.TemporaryDirectory(prefix="provender-abuse-") as tmp:
        config = setup(Path(tmp))
        for index in range(args.runs):
            order = list(contenders.items())
            for name, source in order if index % 2 == 0 else reversed(order):
                loads.append(round(os.getloadavg()[0], 1))
                run = one_run(config, args, source)
                runs[name].append(run)
                print(f"{name} run {index + 1}: {json.dumps(run)}", flush=True)
    medians = {
        name: {
            phase: {field: median_of(contender_runs, phase, field) for field in FIELDS}
            for phase in PHASES
            if phase in contender_runs[0]
        }
        for name, contender_runs in runs.items()
    }
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "seconds": args.seconds,
        "abusers": args.abusers,
        "runs_per_contender": args.runs,
        "contenders": contenders,
        "loads": loads,
        "runs": runs,
        "medians": medians,
    }
    print(json.dumps(medians, indent=2))
    if not args.quick:
        write_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
