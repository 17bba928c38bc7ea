"""User-space WAN emulation for the lab: a TCP relay that delays every chunk by RTT/2 each way.

This VM's kernel has no sch_netem (`tc qdisc ... netem` fails), so the benchmark points SSH clients at
this relay instead of at HOST:22. One listening port per lab host, on loopback; each accepted
connection is forwarded to the host's sshd, and every chunk read in either direction is written out
RTT/2 after it was read, in order (a reader task stamps chunks, a writer task releases them when due,
so delays overlap like a real link's and never add up inside one direction).

    python3 bench/latency_proxy.py --rtt 30 --map 42001=10.78.0.2:22 --map 42002=10.78.0.3:22 --max-seconds 600

Prints "ready" on stdout once every port listens. Bounded: exits after --max-seconds (default 3600)
or on SIGTERM/SIGINT. Targets must be loopback or lab addresses (10.77.0.0/16 .. 10.86.0.0/16):
this relay never forwards anywhere else.

With trace=True (Python API) every chunk is recorded as (direction, time, bytes), so a benchmark can
count request/response round trips of one connection (see count_turns).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

LAB_NETS = [ipaddress.ip_network(f"10.{n}.0.0/16") for n in range(77, 87)]


def allowed_target(host: str) -> bool:
    """Only loopback and lab addresses: a relay must never become a way out of the machine."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or any(addr in net for net in LAB_NETS)


@dataclass
class ConnTrace:
    port: int
    opened: float
    events: list[tuple[str, float, int]] = field(default_factory=list)  # ("c2s"|"s2c", t read, bytes)
    closed: float | None = None


def count_turns(events: list[tuple[str, float, int]], after: float = float("-inf")) -> int:
    """Round trips the client waited for: client-to-server bursts that follow server data.

    events are (direction, time, nbytes) in read order as seen by the relay. A "turn" starts each
    time the client sends after the server has sent something since the client's previous burst
    (the client's first burst counts too). Only bursts starting at or after `after` are counted.
    """
    turns = 0
    last = None
    for direction, t, n in events:
        if n <= 0:
            continue
        if direction == "c2s" and last != "c2s":
            if t >= after:
                turns += 1
        last = direction
    return turns


# Segment size of the relay's sockets. This machine's loopback carries a `tbf` qdisc with a 10 KB burst,
# which drops every segment larger than the burst (loopback's MTU is 64 KB): a 20 KB SSH packet stalled
# until TCP gave up. A WAN-like MSS (1400 bytes, announced to the client through the listening socket
# and inherited by accepted sockets) keeps every segment under it, and is what a real WAN path carries.
RELAY_MSS = 1400


def listening_socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, RELAY_MSS)
    s.bind((host, port))
    s.setblocking(False)
    return s


def _nodelay(writer) -> None:
    """A relay is a middlebox: it forwards what it got when due, and must not add Nagle waits of its own."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Relay:
    def __init__(self, mapping: list[tuple[int, str, int]], rtt_ms: float, listen_host: str = "127.0.0.1",
                 trace: bool = False):
        bad = [t for _, t, _ in mapping if not allowed_target(t)]
        if bad:
            raise ValueError(f"relay targets must be loopback or lab addresses, not {bad}")
        if not ipaddress.ip_address(listen_host).is_loopback and not allowed_target(listen_host):
            raise ValueError(f"listen address must be loopback or a lab address, not {listen_host}")
        self.mapping = mapping
        self.delay = rtt_ms / 2000.0
        self.listen_host = listen_host
        self.trace = trace
        self.traces: list[ConnTrace] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.connections = 0

    async def start(self) -> None:
        for port, host, hport in self.mapping:
            srv = await asyncio.start_server(
                lambda r, w, h=host, p=hport, lp=port: self._handle(r, w, h, p, lp),
                sock=listening_socket(self.listen_host, port), backlog=512)
            self.servers.append(srv)

    async def close(self) -> None:
        for srv in self.servers:
            srv.close()
        for srv in self.servers:
            await srv.wait_closed()

    async def _pump(self, reader, writer, direction: str, tr: ConnTrace | None) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        async def read_side():
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                now = loop.time()
                if tr is not None and data:
                    tr.events.append((direction, time.monotonic(), len(data)))
                await queue.put((now + self.delay, data))
                if not data:
                    return

        async def write_side():
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        await asyncio.gather(read_side(), write_side())

    async def _handle(self, creader, cwriter, host: str, port: int, lport: int) -> None:
        self.connections += 1
        tr = ConnTrace(lport, time.monotonic()) if self.trace else None
        if tr is not None:
            self.traces.append(tr)
        try:
            # The TCP handshake to a far host costs one RTT before the first byte can flow.
            if self.delay:
                await asyncio.sleep(2 * self.delay)
            ssock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ssock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, RELAY_MSS)
            ssock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(ssock, (host, port))
            except OSError:
                ssock.close()
                raise
            sreader, swriter = await asyncio.open_connection(sock=ssock)
        except OSError:
            cwriter.close()
            return
        _nodelay(cwriter)
        _nodelay(swriter)
        try:
            await asyncio.gather(self._pump(creader, swriter, "c2s", tr), self._pump(sreader, cwriter, "s2c", tr))
        finally:
            for w in (swriter, cwriter):
                w.close()
            if tr is not None:
                tr.closed = time.monotonic()


def parse_map(specs: list[str]) -> list[tuple[int, str, int]]:
    out = []
    for spec in specs:
        lport, _, target = spec.partition("=")
        host, _, hport = target.rpartition(":")
        out.append((int(lport), host, int(hport)))
    return out


async def _main(args) -> int:
    mapping = parse_map(args.map)
    if args.map_file:
        with open(args.map_file) as fh:
            mapping += parse_map([ln.strip() for ln in fh if ln.strip()])
    relay = Relay(mapping, args.rtt, args.listen)
    await relay.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        print(f"latency_proxy: --max-seconds {args.max_seconds} reached, stopping", file=sys.stderr)
    await relay.close()
    return 0


def measure_link(host: str, port: int, timeout: float = 10.0) -> dict:
    """Time a TCP connect, the SSH banner, and one client-banner -> server-KEXINIT exchange (1 RTT).

    sshd sends its banner on accept, then its KEXINIT only after the client's banner arrives, so the
    second figure is a full round trip through whatever sits between (the relay's added delay).
    """
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t_conn = time.monotonic()
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed before the SSH banner")
            buf += chunk
        t_banner = time.monotonic()
        rest = buf.split(b"\n", 1)[1]
        s.sendall(b"SSH-2.0-kijun-bench-latency-check\r\n")
        t_sent = time.monotonic()
        if not rest:
            if not s.recv(4096):
                raise OSError("connection closed before KEXINIT")
        t_kex = time.monotonic()
    return {"connect_ms": (t_conn - t0) * 1000, "banner_ms": (t_banner - t0) * 1000,
            "exchange_ms": (t_kex - t_sent) * 1000, "kexinit_before_banner": bool(rest)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt", type=float, required=True, help="round-trip time to add, in ms")
    p.add_argument("--map", action="append", default=[], metavar="LPORT=HOST:PORT")
    p.add_argument("--map-file", help="file with one LPORT=HOST:PORT per line")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--max-seconds", type=float, default=3600)
    args = p.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
