#!/usr/bin/env python3
"""denwa benchmark B3: media relay capacity.

SIPp UAC -> server -> SIPp UAS; every call streams G.711 u-law from the
caller (50 packets/s) and the callee echoes it back (SIPp -rtp_echo), so
the relay forwards 100 packets/s per call. The ladder steps the number of
concurrent calls. In the same run the same load goes through Debian's
rtpengine (userspace forwarding) behind Kamailio (bench/kamailio.cfg with
WITH_RTPENGINE).

Per step, in a window when every call of the step is up: the relay's CPU
time per forwarded packet, its memory per call (PSS growth over the idle
server, divided by calls), and over the whole step the loss: packets the
relay sent back to callers against packets it sent to callees (the echo
returns every packet it gets).

Run through bench/b3_media.sh. Everything runs on 127.0.0.1, every process
under `timeout`, stopped by its PID; every SIPp run has a bounded count.
"""

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import bench as B

RTPE_NG = 2223
RTPE_CLI = 2224
RTPE_PORTS = (30000, 40000)
DENWA_RTP = (16000, 28000)


def sysctl(name, value=None):
    path = "/proc/sys/" + name.replace(".", "/")
    if value is None:
        with open(path) as f:
            return f.read().strip()
    with open(path, "w") as f:
        f.write(str(value))
    return None


def write_audio(path, seconds):
    """A raw u-law 440 Hz tone SIPp streams in a loop."""
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-t", "ul", path,
         "synth", str(seconds), "sine", "440", "vol", "0.5"],
        check=True,
    )


def scenario_copy(work, audio):
    with open(os.path.join(B.SCENARIOS, "uac_media.xml")) as f:
        text = f.read().replace("AUDIO.ulaw", audio)
    path = os.path.join(work, "uac_media.xml")
    with open(path, "w") as f:
        f.write(text)
    return path


# ------------------------------------------------------------- rtpengine


def rtpe_cli(command):
    try:
        with socket.create_connection(("127.0.0.1", RTPE_CLI), timeout=2) as s:
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace")
    except OSError:
        return ""


def rtpe_value(text, label):
    for line in text.splitlines():
        if line.strip().startswith(label):
            try:
                return float(line.rsplit(":", 1)[1])
            except ValueError:
                return None
    return None


class Rtpengine:
    """rtpengine (userspace only) plus Kamailio anchoring media at it."""

    label = "rtpengine"

    def __init__(self, work, first, last):
        self.dir = os.path.join(work, "rtpengine")
        os.makedirs(self.dir)
        self.callee_media_port = None
        for port in (RTPE_NG, RTPE_CLI):
            if not port_free(port):
                raise RuntimeError(f"port {port} on 127.0.0.1 is busy")
        self.rtpe = B.Proc(
            "rtpengine",
            [
                "rtpengine", "--config-file=none", "--table=-1",
                "--interface=127.0.0.1",
                f"--listen-ng=127.0.0.1:{RTPE_NG}", f"--listen-cli=127.0.0.1:{RTPE_CLI}",
                f"--port-min={RTPE_PORTS[0]}", f"--port-max={RTPE_PORTS[1]}",
                "--timeout=60", "--delete-delay=0", "--foreground", "--log-stderr",
                "--log-level=6",
            ],
            7200,
            os.path.join(self.dir, "rtpengine.log"),
        )
        deadline = time.time() + 20
        while not rtpe_cli("list totals") and time.time() < deadline:
            time.sleep(0.1)  # polling a condition, bounded
        self.port = B.free_port()
        self.kamailio = B.Proc(
            "kamailio",
            [
                "kamailio", "-f", os.path.join(B.HERE, "kamailio.cfg"),
                "-DD", "-E", "-m", "1024", "-M", "16", "-Y", self.dir,
                "-l", f"udp:127.0.0.1:{self.port}",
                "-A", f"BENCH_FIRST={first}", "-A", f"BENCH_LAST={last}",
                "-A", f'BENCH_PW_PREFIX="{B.PW_PREFIX}"', "-A", f'BENCH_REALM="{B.REALM}"',
                "-A", "WITH_RTPENGINE",
                "-A", f'RTPENGINE_SOCK="udp:127.0.0.1:{RTPE_NG}"',
            ],
            7200,
            os.path.join(self.dir, "kamailio.log"),
        )
        if not B.sip_ping(self.port):
            self.stop()
            raise RuntimeError("kamailio did not start:\n" + self.kamailio.tail())

    def relay_pid(self):
        return self.rtpe.pid

    def signalling_pid(self):
        return self.kamailio.pid

    def log_directions(self):
        """Packets rtpengine received from callers and from callees in the
        calls it has deleted, from the final statistics it logs per call
        (`Port local <> remote, SSRC x, N p, ...`): streams whose remote is
        the callee's echo port came from callees."""
        pattern = re.compile(r"Port\s+\S+\s+<>\s+\S+:(\d+)\s*,.*?\s(\d+) p,")
        callers = callees = 0
        try:
            with open(self.rtpe.logfile, errors="replace") as f:
                for line in f:
                    m = pattern.search(line)
                    if not m:
                        continue
                    port, packets = int(m.group(1)), int(m.group(2))
                    if port == self.callee_media_port:
                        callees += packets
                    else:
                        callers += packets
        except OSError:
            return None
        return float(callers), float(callees)

    def forwarded_total(self):
        """Packets relayed by finished sessions."""
        return rtpe_value(rtpe_cli("list totals"), "Total relayed packets (userspace)")

    def pps_now(self):
        return rtpe_value(rtpe_cli("list totals"), "Packets per second (userspace)")

    def settle(self, timeout_s=60):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if (rtpe_value(rtpe_cli("list totals"), "Total sessions") or 0) == 0:
                return True
            time.sleep(0.5)  # polling a condition, bounded
        return False

    def stop(self):
        self.kamailio.stop()
        self.rtpe.stop()


class DenwaRelay:
    label = "denwa"

    def __init__(self, binary, work, first, last, record=False):
        sections = '[recording]\nenabled = true\nlayout = "stereo"\n' if record else ""
        self.label = "denwa-rec" if record else "denwa"
        self.d = B.Denwa(binary, work, first, last, rtp=DENWA_RTP, sections=sections)
        self.port = self.d.port

    def relay_pid(self):
        return self.d.proc.pid

    def signalling_pid(self):
        return None

    def directions(self):
        body = self.d.http_get("/metrics") or ""
        vals = {}
        for line in body.splitlines():
            for key in ("caller_to_callee", "callee_to_caller"):
                if line.startswith(f"denwa_rtp_packets_{key}_total "):
                    vals[key] = float(line.split()[-1])
        return vals.get("caller_to_callee", 0.0), vals.get("callee_to_caller", 0.0)

    def forwarded_total(self):
        return sum(self.directions())

    def settle(self, timeout_s=60):
        return self.d.settle(timeout_s)

    def stop(self):
        self.d.proc.stop()


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# ------------------------------------------------------------------ steps


def uac_args(target, scenario, calls, rate, hold_ms, callee, inf, workdir, limit_s, media_port):
    return B.sipp_args(
        target, scenario, B.free_port(), workdir,
        [
            "-inf", inf, "-s", str(callee),
            "-m", str(calls), "-r", str(rate), "-l", str(calls + 10),
            "-d", str(hold_ms), "-mp", str(media_port),
            "-trace_stat", "-stf", os.path.join(workdir, "stat.csv"), "-fd", "1",
            "-recv_timeout", "20s", "-timeout", f"{int(limit_s)}s",
        ],
    )


def sample_window(server, pid, seconds, pps_samples):
    """CPU seconds of the relay process and forwarded packets over a window."""
    c0, f0, t0 = B.tree_cpu_seconds(pid), live_forwarded(server), time.time()
    while time.time() - t0 < seconds:
        time.sleep(min(1.0, seconds - (time.time() - t0)))
        if isinstance(server, Rtpengine):
            pps = server.pps_now()
            if pps is not None:
                pps_samples.append(pps)
    c1, f1, t1 = B.tree_cpu_seconds(pid), live_forwarded(server), time.time()
    return c1 - c0, (None if f0 is None else f1 - f0), t1 - t0


def live_forwarded(server):
    """denwa counts forwarded packets live; rtpengine only per second."""
    return server.forwarded_total() if isinstance(server, DenwaRelay) else None


def run_step(server, calls, args, scenario, inf, callee, work, idle):
    ramp_s = max(5, calls // 100)
    rate = max(1, calls // ramp_s)
    ramp_s = calls / rate
    hold_ms = int((ramp_s + args.settle + args.window + 3) * 1000)
    workdir = os.path.join(work, f"{server.label}-{calls}")
    os.makedirs(workdir)
    limit = ramp_s + hold_ms / 1000 + 90
    pid = server.relay_pid()
    before = directions(server)
    media_port = B.free_port()
    out = open(os.path.join(workdir, "sipp.out"), "wb")
    uac = subprocess.Popen(
        ["timeout", str(int(limit) + 15),
         *uac_args(f"127.0.0.1:{server.port}", scenario, calls, rate, hold_ms,
                   callee, inf, workdir, limit, media_port)],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
    )
    out.close()
    try:
        # Steady state: every call up, none ended, and the call set-up
        # behind (its SIP transactions finished and forgotten).
        time.sleep(ramp_s + args.settle)
        pss1 = B.tree_pss_mib(pid)
        sig = server.signalling_pid()
        sig1 = B.tree_pss_mib(sig) if sig else None
        pps = []
        capture = None
        if args.latency:
            capture = start_capture(workdir, media_port, server.callee_media_port, args.window)
        cpu, fwd, win = sample_window(server, pid, args.window, pps)
        latency = finish_capture(capture, media_port, server.callee_media_port)
        if fwd is None:
            use = pps[1:] if len(pps) > 2 else pps
            fwd = (sum(use) / len(use)) * win if use else 0
        uac.wait(timeout=limit + 30)
    finally:
        if uac.poll() is None:
            uac.terminate()
            uac.wait(timeout=10)
    server.settle()
    after = directions(server)
    st = B.parse_stat(os.path.join(workdir, "stat.csv")) if os.path.exists(
        os.path.join(workdir, "stat.csv")) else {}
    ok = int(float(st.get("SuccessfulCall(C)", "0") or 0))
    failed = int(float(st.get("FailedCall(C)", "0") or 0))
    to_callee = after[0] - before[0] if after and before else None
    to_caller = after[1] - before[1] if after and before else None
    loss = None
    if to_callee:
        loss = 100.0 * max(0.0, 1 - to_caller / to_callee)
    return {
        "calls": calls, "ok": ok, "failed": failed,
        "cpu_s": cpu, "window_s": win, "forwarded": fwd,
        "pps": fwd / win if win else 0,
        "us_per_pkt": 1e6 * cpu / fwd if fwd else None,
        "cpu_pct": 100 * cpu / win if win else 0,
        "mem_per_call_kib": 1024 * (pss1 - idle[0]) / calls,
        "sig_mem_per_call_kib": 1024 * (sig1 - idle[1]) / calls if sig1 is not None else None,
        "pss_mib": pss1,
        "to_callee": to_callee, "to_caller": to_caller, "loss_pct": loss,
        "expected_pps": calls * 100,
        "latency": latency,
    }


def start_capture(workdir, caller_port, callee_port, seconds):
    """tcpdump on loopback: what the caller sends to the relay, and what
    the relay sends to the callee (one direction is enough to time it)."""
    path = os.path.join(workdir, "relay.pcap")
    cmd = [
        "timeout", str(seconds + 5), "tcpdump", "-i", "lo", "-nn", "-q", "-B", "65536",
        "--time-stamp-precision=nano", "-w", path,
        f"udp and (src port {caller_port} or dst port {callee_port})",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # tcpdump opens the interface
    return proc, path


def finish_capture(capture, caller_port, callee_port):
    """Latencies (ms) of the packets seen going in and coming out, paired
    by SSRC, sequence number and timestamp (the plain relay keeps them)."""
    if capture is None:
        return None
    proc, path = capture
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    import struct
    inbound, latencies, lost = {}, [], 0
    try:
        data = open(path, "rb").read()
    except OSError:
        return None
    if len(data) < 24:
        return None
    magic = struct.unpack("<I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack("<I", data[20:24])[0]
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack("<IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + incl]
        offset += 16 + incl
        t = sec + frac / (1e9 if nano else 1e6)
        l2 = 14 if linktype == 1 else (16 if linktype == 113 else 4)
        ip = frame[l2:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        udp = ip[ihl:]
        if len(udp) < 8 + 12:
            continue
        sport, dport = struct.unpack(">HH", udp[:4])
        rtp = udp[8:]
        key = rtp[2:12]  # sequence, timestamp, SSRC
        if sport == caller_port:
            inbound[key] = t
        elif dport == callee_port:
            t_in = inbound.pop(key, None)
            if t_in is not None:
                latencies.append(1000 * (t - t_in))
    lost = len(inbound)
    latencies.sort()
    return {"packets": len(latencies), "unpaired": lost, "ms": latencies}


def percentile_ms(values, p):
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(p / 100 * len(values))) - 1))
    return values[k]


def directions(server):
    if isinstance(server, DenwaRelay):
        return server.directions()
    return rtpe_directions(server)


def rtpe_directions(server):
    """rtpengine: packets received per stream, from the final statistics
    it logs for every deleted call: (from callers, from callees)."""
    return server.log_directions()


def check_recordings(data_dir):
    """B5a: every recording against its call. Returns (files, worst
    |duration - talk time| in ms, files with a gap). A gap is a 20 ms block
    of the caller's channel (which carries a steady tone) near silence,
    away from the first and last 200 ms."""
    import sqlite3
    import struct
    import wave
    db = sqlite3.connect(os.path.join(data_dir, "denwa.sqlite"))
    rows = db.execute(
        "SELECT r.path, r.duration_ms, c.talk_ms FROM recordings r "
        "JOIN call_records c ON c.call_id = r.call_id WHERE r.state = 'complete'"
    ).fetchall()
    db.close()
    worst, gaps = 0, 0
    for path, duration_ms, talk_ms in rows:
        worst = max(worst, abs((duration_ms or 0) - (talk_ms or 0)))
        with wave.open(os.path.join(data_dir, path)) as w:
            frames = w.readframes(w.getnframes())
            channels = w.getnchannels()
        samples = struct.unpack(f"<{len(frames) // 2}h", frames)
        left = samples[::channels]
        block = 160
        for i in range(10, len(left) // block - 10):
            chunk = left[i * block:(i + 1) * block]
            if max(abs(x) for x in chunk) < 100:
                gaps += 1
                break
    return len(rows), worst, gaps


def marginal_memory(steps):
    """Memory per call as the slope between the first step and each later
    one: what one more call costs, without the fixed growth (thread caches,
    allocator arenas) that the first calls pay for."""
    first = steps[0] if steps else None
    for s in steps:
        s["mem_marginal_kib"] = None
        if first is not None and s is not first and s["calls"] > first["calls"]:
            s["mem_marginal_kib"] = 1024 * (s["pss_mib"] - first["pss_mib"]) / (
                s["calls"] - first["calls"]
            )


def passed(step, threshold):
    return (
        step["failed"] == 0
        and step["ok"] == step["calls"]
        and step["loss_pct"] is not None
        and step["loss_pct"] <= threshold
        and step["pps"] >= 0.97 * step["expected_pps"]
    )


# ----------------------------------------------------------------- report


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def ladder(steps):
    lines = [
        "| concurrent calls | calls ok/failed | forwarded pps (measured / expected) | relay CPU % (1 core = 100) "
        "| CPU µs per packet | memory per call KiB (over idle) | memory per added call KiB (over the first step) "
        "| relay PSS MiB | signalling (Kamailio) memory per call KiB | loss % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['calls']} | {s['ok']}/{s['failed']} | {s['pps']:.0f} / {s['expected_pps']} "
            f"| {s['cpu_pct']:.0f} | {fmt(s['us_per_pkt'], '.2f')} | {fmt(s['mem_per_call_kib'], '.0f')} "
            f"| {fmt(s.get('mem_marginal_kib'), '.0f')} "
            f"| {s['pss_mib']:.0f} | {fmt(s['sig_mem_per_call_kib'], '.0f') if s['sig_mem_per_call_kib'] is not None else 'in denwa'} "
            f"| {fmt(s['loss_pct'], '.3f')} |"
        )
    return "\n".join(lines)


def best_clean(steps, threshold):
    top = None
    for s in steps:
        if not passed(s, threshold):
            break
        top = s
    return top


def latency_summary(results):
    """B4: time through the relay, caller -> relay -> callee, per step."""
    lines = [
        "",
        "## B4 added latency through the relay (caller → relay → callee, from a loopback capture)",
        "",
        "| relay | concurrent calls | packets timed | p50 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    verdict = []
    for kind, steps in results.items():
        for s in steps:
            lat = s.get("latency")
            if not lat:
                continue
            v = lat["ms"]
            p50, p99, p999 = (percentile_ms(v, q) for q in (50, 99, 99.9))
            lines.append(
                f"| {kind} | {s['calls']} | {lat['packets']} | {fmt(p50, '.3f')} | "
                f"{fmt(p99, '.3f')} | {fmt(p999, '.3f')} | {fmt(v[-1] if v else None, '.3f')} |"
            )
            if kind == "denwa":
                verdict.append(p50 is not None and p50 <= 1 and p999 is not None and p999 <= 5)
    ok = bool(verdict) and all(verdict)
    lines += ["", "target (denwa): p50 ≤ 1 ms and p99.9 ≤ 5 ms at every step: "
              + ("met" if ok else "NOT met"), ""]
    return "\n".join(lines) + "\n"


def recording_summary(plain, recorded):
    """B5a: the same steps with every call recorded."""
    lines = [
        "",
        "## B5a recording: the same calls, every one recorded (stereo WAV)",
        "",
        "| concurrent calls | CPU µs per packet, plain / recorded | extra CPU | recordings checked "
        "| worst \\|duration − talk time\\| ms | files with a gap |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for s in recorded:
        base = next((p for p in plain if p["calls"] == s["calls"]), None)
        files, worst, gaps = s.get("rec", (0, None, None))
        extra = None
        if base and base["us_per_pkt"] and s["us_per_pkt"]:
            extra = 100 * (s["us_per_pkt"] / base["us_per_pkt"] - 1)
        verdicts.append((extra, worst, gaps, files))
        lines.append(
            f"| {s['calls']} | {fmt(base and base['us_per_pkt'], '.2f')} / {fmt(s['us_per_pkt'], '.2f')} "
            f"| {fmt(extra, '+.0f')} % | {files} | {worst} | {gaps} |"
        )
    ok = all(
        e is not None and e <= 20 and w is not None and w <= 20 and g == 0 and f > 0
        for e, w, g, f in verdicts
    )
    lines += ["", "target: extra CPU ≤ 20 %, no gaps, durations within 20 ms: "
              + ("met" if ok else "NOT met"), ""]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", default="100,200,400,600,800,1000,1200,1500",
                   help="comma-separated ladder of concurrent calls")
    p.add_argument("--window", type=int, default=15, help="seconds measured per step")
    p.add_argument("--settle", type=int, default=35,
                   help="seconds after the last call is up before measuring (the set-up's "
                        "SIP transactions are kept 64·T1 = 32 s)")
    p.add_argument("--loss", type=float, default=0.01, help="loss % that ends the ladder")
    p.add_argument("--denwa", help="denwa binary (default target/release/denwa, built if missing)")
    p.add_argument("--name", default="b3-media", help="results file name after the date")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--servers", default="denwa,rtpengine")
    p.add_argument("--latency", action="store_true",
                   help="B4: capture the relay's traffic in each window and time it")
    args = p.parse_args()
    args.calls = [int(c) for c in args.calls.split(",")]
    args.servers = [
        s for s in args.servers.split(",") if s in ("denwa", "denwa-rec", "rtpengine")
    ]
    args.denwa_sip = ""
    args.command_line = " ".join(["bench/b3_media.sh", *sys.argv[1:]])
    for tool in ("sipp", "kamailio", "rtpengine", "sox", "timeout"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y sip-tester kamailio "
                     "kamailio-extra-modules rtpengine-daemon sox)")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bindir = tempfile.mkdtemp(prefix="denwa-bench-bin-")
    work = tempfile.mkdtemp(prefix="denwa-bench-b3-")
    results = {}
    pre = {"load": B.loadavg(), "busy": B.busy_percent()}
    try:
        args.binary = os.path.join(bindir, "denwa")
        source, args.build = B.denwa_binary(args)
        shutil.copy2(source, args.binary)
        audio = os.path.join(work, "tone.ulaw")
        write_audio(audio, 60)
        scenario = scenario_copy(work, audio)
        first = B.FIRST_USER
        callee = first + 1000
        callers = [B.auth_line(n) for n in range(first, callee)]
        inf = os.path.join(work, "callers.csv")
        with open(inf, "w") as f:
            f.write("SEQUENTIAL\n" + "".join(line + "\n" for line in callers))
        for kind in args.servers:
            B.log(f"== B3 {kind}")
            if kind == "rtpengine":
                server = Rtpengine(work, first, callee)
            else:
                home = os.path.join(work, kind)
                os.makedirs(home)
                server = DenwaRelay(args.binary, home, first, callee, record=kind == "denwa-rec")
            uas = None
            rmem = sysctl("net.core.rmem_default")
            try:
                uas_dir = os.path.join(work, f"{kind}-uas")
                os.makedirs(uas_dir)
                uas_port, uas_media = B.free_port(), B.free_port()
                server.callee_media_port = uas_media
                # SIPp's echo socket takes the system default receive buffer;
                # raise it only while the UAS binds.
                sysctl("net.core.rmem_default", 8 * 1024 * 1024)
                uas = B.Proc(
                    "sipp-uas",
                    B.sipp_args(None, os.path.join(B.SCENARIOS, "uas_media.xml"), uas_port,
                                uas_dir, ["-mp", str(uas_media), "-rtp_echo"]),
                    7200, os.path.join(uas_dir, "sipp.out"), cwd=uas_dir,
                )
                time.sleep(1)  # SIPp binds its sockets at start-up
                sysctl("net.core.rmem_default", rmem)
                reg = B.run_sipp(
                    f"127.0.0.1:{server.port}", os.path.join(B.SCENARIOS, "register.xml"),
                    [B.auth_line(callee)], 1, 1, os.path.join(work, f"{kind}-register"),
                    ["-key", "contact_port", str(uas_port)], 30,
                )
                if reg["ok"] != 1:
                    raise RuntimeError(f"{kind}: the callee did not register")
                steps = []
                sig = server.signalling_pid()
                idle = (B.tree_pss_mib(server.relay_pid()), B.tree_pss_mib(sig) if sig else None)
                for calls in args.calls:
                    s = run_step(server, calls, args, scenario, inf, callee, work, idle)
                    if kind == "denwa-rec":
                        s["rec"] = check_recordings(os.path.join(server.d.dir, "data"))
                    steps.append(s)
                    B.log(
                        f"  {calls} calls: ok {s['ok']} failed {s['failed']}, "
                        f"{s['pps']:.0f}/{s['expected_pps']} pps, CPU {s['cpu_pct']:.0f} %, "
                        f"{fmt(s['us_per_pkt'], '.2f')} µs/pkt, "
                        f"{fmt(s['mem_per_call_kib'], '.0f')} KiB/call, loss {fmt(s['loss_pct'], '.3f')} %"
                    )
                    if not passed(s, args.loss):
                        break
                marginal_memory(steps)
                results[kind] = steps
            finally:
                sysctl("net.core.rmem_default", rmem)
                if uas:
                    uas.stop()
                server.stop()
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
        if args.keep:
            B.log(f"work files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    post = {"load": B.loadavg(), "busy": B.busy_percent()}
    report(args, results, pre, post)


def report(args, results, pre, post):
    d, r = results.get("denwa", []), results.get("rtpengine", [])
    rec = results.get("denwa-rec", [])
    bd, br = best_clean(d, args.loss), best_clean(r, args.loss)

    def median(steps, key):
        vals = sorted(s[key] for s in steps if s[key] is not None and passed(s, args.loss))
        return vals[len(vals) // 2] if vals else None

    us_d, us_r = median(d, "us_per_pkt"), median(r, "us_per_pkt")
    mem_d, mem_r = median(d, "mem_marginal_kib"), median(r, "mem_marginal_kib")
    cpu_ratio = B.ratio(us_d, us_r)
    mem_ratio = B.ratio(mem_d, mem_r)
    conc_ratio = B.ratio(bd["calls"] if bd else None, br["calls"] if br else None)
    summary = "\n".join([
        "| relay | highest clean concurrency | CPU µs per packet (median of clean steps) | memory per added call KiB (median of clean steps) |",
        "|---|---|---|---|",
        f"| denwa | {bd['calls'] if bd else '-'} | {fmt(us_d, '.2f')} | {fmt(mem_d, '.0f')} |",
        f"| rtpengine | {br['calls'] if br else '-'} | {fmt(us_r, '.2f')} | {fmt(mem_r, '.0f')} |",
        "",
        f"denwa / rtpengine: CPU per packet {B.fmt_ratio(cpu_ratio)}, memory per call "
        f"{B.fmt_ratio(mem_ratio)}, clean concurrency {B.fmt_ratio(conc_ratio)}",
        "target: CPU per packet ≤ 0.50 ("
        + ("met" if cpu_ratio is not None and cpu_ratio <= 0.5 else "NOT met")
        + "), memory per call ≤ 1.00 ("
        + ("met" if mem_ratio is not None and mem_ratio <= 1 else "NOT met")
        + "), clean concurrency ≥ 1.00 ("
        + ("met" if conc_ratio is not None and conc_ratio >= 1 else "NOT met")
        + ")",
        "",
    ])
    m = B.machine()
    head = "\n".join([
        "# B3 media relay: concurrent G.711 calls, denwa vs rtpengine",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} memory, Linux {m['kernel']}",
        f"- load average before / after: {pre['load']} / {post['load']}; CPU busy in the 2 s "
        f"before / after: {pre['busy']:.0f} % / {post['busy']:.0f} %",
        f"- denwa {args.build}; {B.version(['sipp', '-v'])}; {B.version(['rtpengine', '-v'])}",
        "- load: SIPp bench/sipp/uac_media.xml (INVITE with 407 digest challenge, then G.711 "
        "u-law at 50 packets/s for the whole call) to a registered SIPp UAS "
        "(bench/sipp/uas_media.xml with -rtp_echo): 100 packets/s through the relay per call",
        "- rtpengine: userspace forwarding (--table=-1) behind Kamailio "
        "(bench/kamailio.cfg with WITH_RTPENGINE: rtpengine_offer/answer/delete)",
        f"- per step: calls ramp up at 100/s (at least 5 s); {args.settle} s later"
        + (" (call set-up finished, its SIP transactions expired: 64·T1 = 32 s)"
           if args.settle >= 33 else "")
        + f" a {args.window} s window "
        "with every call up: relay CPU (utime + stime from /proc) over packets forwarded in "
        "the window (denwa: its live counters; rtpengine: its packets-per-second readings); "
        "memory: PSS of the relay process with every call up, less its PSS when idle "
        "before the first step, per call; and per added call, the PSS growth from the "
        "first step over the calls added (the target compares the latter)",
        "- loss: over the whole step, packets the relay passed back to callers against "
        "packets it passed to callees (the echo returns every packet it gets; denwa: its "
        "per-direction counters; rtpengine: the final per-stream statistics it logs per call)",
        f"- the ladder stops at the first step with a failed call, loss above {args.loss} %, "
        "or less than 97 % of the expected packet rate",
        f"- command: `{args.command_line}`",
        "",
    ])
    b5a = recording_summary(d, rec) if rec else ""
    b4 = latency_summary(results) if args.latency else ""
    text = (
        head + "\n## Summary\n\n" + summary + b4 + b5a
        + "\n## denwa ladder\n\n" + ladder(d)
        + "\n\n## rtpengine ladder\n\n" + ladder(r) + "\n"
    )
    path = B.write_report(args.name, text)
    print(summary)
    print(f"written: {os.path.relpath(path, B.ROOT)}")


if __name__ == "__main__":
    main()
