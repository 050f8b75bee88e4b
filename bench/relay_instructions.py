#!/usr/bin/env python3
"""Relay yardstick for a busy machine: instructions per forwarded RTP packet.

The B3 load in small (bench/b3_media.py: SIPp callers streaming G.711 u-law
at 50 packets/s through denwa to a registered SIPp callee that echoes every
packet, so 100 packets/s per call), against denwa alone, once relaying plain
and once recording every call (stereo WAV, as B5a). In a window with every
call up and their set-up behind (its SIP transactions expired), it measures:

  instructions  every thread of denwa, user space, under valgrind's
                callgrind (zeroed at the start of the window, dumped at its
                end), over the packets forwarded in the window; not
                disturbed by other processes, so builds compare on a busy
                machine. The profile is kept for callgrind_annotate.
  syscalls      system calls of denwa (perf's raw_syscalls tracepoint) per
                forwarded packet, from a second run without valgrind, which
                also gives CPU time per packet, per thread group (schedstat;
                disturbed when the machine is busy).

Prints the table and writes it to bench/results/<date>-<name>.md.

Usage: bench/relay_instructions.sh [--calls 20] [--window 20] [--modes plain,recorded]
       [--tools callgrind,syscalls] [--denwa BIN --label TEXT] [--name NAME] [--keep]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import b3_media as M  # noqa: E402

# System calls counted one by one (the rest only in the total).
BREAKDOWN = (
    "recvfrom", "recvmmsg", "recvmsg", "sendto", "sendmmsg", "sendmsg", "epoll_wait",
    "epoll_pwait", "epoll_ctl", "futex", "write", "writev", "pwrite64", "lseek", "read",
    "fsync", "fdatasync", "clock_nanosleep",
)
RECORDING = '[recording]\nenabled = true\nlayout = "stereo"\n'


def denwa_pid(proc):
    """The process running denwa (below `timeout`)."""
    tree = B.descendants(proc.pid)
    return tree[1] if len(tree) > 1 else tree[0]


def callgrind_total(path):
    total = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    return total


def thread_cpu(pid):
    """{thread name: [seconds on a CPU, system ticks, all ticks]} of a
    process. The seconds come from schedstat (exact to the nanosecond,
    where /proc's utime and stime are sampled per tick: too coarse for a
    thread that runs a few milliseconds a second); the ticks only tell the
    share spent in the kernel."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            utime, stime = int(fields[11]), int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
        acc = out.setdefault(name, [0.0, 0, 0])
        acc[0] += ns / 1e9
        acc[1] += stime
        acc[2] += utime + stime
    return out


def forwarded(d):
    """Packets denwa has forwarded (both directions), from /metrics."""
    body = d.http_get("/metrics") or ""
    total = 0.0
    for line in body.splitlines():
        for key in ("caller_to_callee", "callee_to_caller"):
            if line.startswith(f"denwa_rtp_packets_{key}_total "):
                total += float(line.split()[-1])
    return total, time.time()


class Window:
    """Packets forwarded while a measurement runs: the rate read from
    /metrics around the window (the reads themselves stay outside it),
    times the window's own length."""

    def __init__(self, d):
        self.d = d

    def __enter__(self):
        self.f0, self.t0 = forwarded(self.d)
        return self

    def start(self):
        self.w0 = time.time()

    def stop(self):
        self.w1 = time.time()

    def __exit__(self, *exc):
        f1, t1 = forwarded(self.d)
        rate = (f1 - self.f0) / max(1e-9, t1 - self.t0)
        self.rate = rate
        self.packets = rate * (self.w1 - self.w0)
        self.seconds = self.w1 - self.w0
        return False


def measure_callgrind(d, out, window):
    pid = denwa_pid(d.proc)
    with Window(d) as w:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w.start()
        time.sleep(window)  # the measurement window
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w.stop()
    dumps = sorted(
        (f for f in os.listdir(out) if f.startswith(f"callgrind.out.{pid}.")),
        key=lambda f: os.path.getmtime(os.path.join(out, f)),
    )
    ir = callgrind_total(os.path.join(out, dumps[-1])) if dumps else None
    return {"packets": w.packets, "ir": ir, "profile": dumps[-1] if dumps else None}


def measure_syscalls(d, out, window):
    pid = denwa_pid(d.proc)
    stat = os.path.join(out, "perf-stat.txt")
    with Window(d) as w:
        tc0, th0 = time.time(), thread_cpu(pid)
        w.start()
        subprocess.run(
            ["timeout", str(window + 30), "perf", "stat", "-x", ",", "-o", stat,
             "-e", ",".join(["raw_syscalls:sys_enter", "page-faults", "context-switches",
                             *(f"syscalls:sys_enter_{n}" for n in BREAKDOWN)]),
             "-p", str(pid), "--", "sleep", str(window)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        th1, cpu_span = thread_cpu(pid), time.time() - tc0
        cpu = sum(v[0] - th0.get(name, [0, 0, 0])[0] for name, v in th1.items())
        # perf counts while its `sleep` runs, not while it starts up.
        w.stop()
        w.w0 = w.w1 - window
    calls, each, events = None, {}, {}
    with open(stat) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) < 3 or not fields[0].replace(".", "").isdigit():
                continue
            if fields[2] == "raw_syscalls:sys_enter":
                calls = float(fields[0])
            elif fields[2].startswith("syscalls:sys_enter_") and float(fields[0]) > 0:
                each[fields[2].removeprefix("syscalls:sys_enter_")] = float(fields[0])
            elif fields[2] in ("page-faults", "context-switches"):
                events[fields[2]] = float(fields[0])
    threads = {}
    for name, (seconds, sys_ticks, ticks) in th1.items():
        group = "media workers" if name.startswith("denwa-media") else (
            "recording writer" if name == "denwa-recorder" else "other")
        before = th0.get(name, [0, 0, 0])
        acc = threads.setdefault(group, [0.0, 0, 0])
        acc[0] += seconds - before[0]
        acc[1] += sys_ticks - before[1]
        acc[2] += ticks - before[2]
    per_packet = (lambda s: 1e6 * s / (w.rate * cpu_span)) if w.rate else (lambda s: None)
    return {"packets": w.packets, "syscalls": calls, "each": each, "events": events,
            "cpu_us_per_packet": per_packet(cpu),
            "threads": {k: (per_packet(v[0]), v[1] / v[2] if v[2] else None)
                        for k, v in threads.items()}}


def run_mode(args, mode, tool, work, scenario, inf):
    """One denwa (under callgrind or not), `args.calls` calls, one window."""
    slow = tool == "callgrind"
    home = os.path.join(work, f"{mode}-{tool}")
    os.makedirs(home)
    wrap = []
    if slow:
        wrap = ["valgrind", "--tool=callgrind", "--quiet", "--compress-strings=no",
                f"--callgrind-out-file={home}/callgrind.out.%p"]
    first = B.FIRST_USER
    callee = first + 1000
    d = B.Denwa(args.binary, home, first, callee, rtp=M.DENWA_RTP, wrap=wrap,
                start_s=120 if slow else 20,
                sections=RECORDING if mode == "recorded" else "")
    uas = uac = None
    try:
        uas_port, uas_media = B.free_port(), B.free_port()
        uas = B.Proc(
            "sipp-uas",
            B.sipp_args(None, os.path.join(B.SCENARIOS, "uas_media.xml"), uas_port,
                        home, ["-mp", str(uas_media), "-rtp_echo"]),
            3600, os.path.join(home, "sipp-uas.out"), cwd=home,
        )
        time.sleep(1)  # SIPp binds its sockets at start-up
        reg = B.run_sipp(
            f"127.0.0.1:{d.port}", os.path.join(B.SCENARIOS, "register.xml"),
            [B.auth_line(callee)], 1, 1, os.path.join(home, "register"),
            ["-key", "contact_port", str(uas_port)], 60,
        )
        if reg["ok"] != 1:
            raise RuntimeError(f"{mode}: the callee did not register:\n" + d.proc.tail())
        rate = 2 if slow else 20
        ramp = args.calls / rate
        hold_ms = int((ramp + args.settle + args.window + 15) * 1000)
        limit = ramp + hold_ms / 1000 + 120
        uac_dir = os.path.join(home, "uac")
        os.makedirs(uac_dir)
        uac = B.Proc(
            "sipp-uac",
            M.uac_args(f"127.0.0.1:{d.port}", scenario, args.calls, rate, hold_ms, callee,
                       inf, uac_dir, limit, B.free_port()),
            int(limit) + 15, os.path.join(uac_dir, "sipp.out"), cwd=uac_dir,
        )
        time.sleep(ramp + args.settle)  # every call up, its set-up behind
        if slow:
            result = measure_callgrind(d, home, args.window)
        else:
            result = measure_syscalls(d, home, args.window)
        result["expected"] = args.calls * 100 * args.window
        return result
    finally:
        for p in (uac, uas):
            if p:
                p.stop()
        d.proc.stop()


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(results, args):
    rows = [
        "| mode | calls | packets in window (expected) | instructions per packet "
        "| syscalls per packet | of which | page faults, context switches per packet "
        "| CPU µs per packet (noisy) | of which, by thread |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in args.modes:
        cg = results.get((mode, "callgrind"), {})
        sc = results.get((mode, "syscalls"), {})
        packets = cg.get("packets") or sc.get("packets")
        ir = cg.get("ir")
        ipp = ir / cg["packets"] if ir and cg.get("packets") else None
        spp = sc["syscalls"] / sc["packets"] if sc.get("syscalls") and sc.get("packets") else None
        upp = sc.get("cpu_us_per_packet")
        expected = args.calls * 100 * args.window
        each = ", ".join(
            f"{name} {n / sc['packets']:.3f}"
            for name, n in sorted(sc.get("each", {}).items(), key=lambda kv: -kv[1])
            if sc.get("packets") and n / sc["packets"] >= 0.001
        ) or "-"
        by_thread = ", ".join(
            f"{name} {v:.2f}" + (f" ({100 * k:.0f} % kernel)" if k is not None else "")
            for name, (v, k) in sorted(sc.get("threads", {}).items(), key=lambda kv: -(kv[1][0] or 0))
            if v is not None and v >= 0.005
        ) or "-"
        ev = sc.get("events", {})
        faults = " / ".join(
            fmt(ev[k] / sc["packets"], ".4f") if k in ev and sc.get("packets") else "-"
            for k in ("page-faults", "context-switches")
        )
        rows.append(
            f"| {mode} | {args.calls} | {fmt(packets, '.0f')} ({expected}) | {fmt(ipp, '.0f')} "
            f"| {fmt(spp, '.2f')} | {each} | {faults} | {fmt(upp, '.2f')} | {by_thread} |"
        )
    plain = results.get(("plain", "callgrind"), {})
    rec = results.get(("recorded", "callgrind"), {})
    extra = ""
    if plain.get("ir") and rec.get("ir") and plain.get("packets") and rec.get("packets"):
        p, r = plain["ir"] / plain["packets"], rec["ir"] / rec["packets"]
        extra = f"\nrecorded / plain instructions per packet: {r / p:.2f} (+{100 * (r / p - 1):.0f} %)\n"
    return "\n".join(rows) + "\n" + extra


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--window", type=int, default=20, help="seconds measured")
    p.add_argument("--settle", type=int, default=35,
                   help="seconds after the last call is up before measuring (the set-up's "
                        "SIP transactions are kept 64·T1 = 32 s)")
    p.add_argument("--modes", default="plain,recorded")
    p.add_argument("--tools", default="callgrind,syscalls")
    p.add_argument("--denwa", help="denwa binary (default target/release/denwa, built first)")
    p.add_argument("--label", help="how the report names the build (default: from git or --denwa)")
    p.add_argument("--name", default="relay-instructions")
    p.add_argument("--keep", action="store_true", help="keep logs and callgrind profiles")
    args = p.parse_args()
    args.modes = [m for m in args.modes.split(",") if m in ("plain", "recorded")]
    args.tools = [t for t in args.tools.split(",") if t in ("callgrind", "syscalls")]
    shown = [a for a in sys.argv[1:]]
    if args.denwa:  # a path of this machine: the label names the build instead
        i = shown.index("--denwa") if "--denwa" in shown else -1
        shown = shown[:i] + shown[i + 2:] if i >= 0 else [a for a in shown if not a.startswith("--denwa=")]
    args.command_line = " ".join(["bench/relay_instructions.sh", *shown])
    for tool in ("sipp", "sox", "valgrind", "callgrind_control", "perf", "timeout"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    work = tempfile.mkdtemp(prefix="denwa-relay-instructions-")
    bindir = tempfile.mkdtemp(prefix="denwa-bench-bin-")
    pre = {"load": B.loadavg(), "busy": B.busy_percent()}
    results = {}
    try:
        args.binary = os.path.join(bindir, "denwa")
        source, args.build = B.denwa_binary(args)
        args.build = args.label or args.build
        shutil.copy2(source, args.binary)
        audio = os.path.join(work, "tone.ulaw")
        M.write_audio(audio, 60)
        scenario = M.scenario_copy(work, audio)
        inf = os.path.join(work, "callers.csv")
        with open(inf, "w") as f:
            f.write("SEQUENTIAL\n" + "".join(
                B.auth_line(n) + "\n" for n in range(B.FIRST_USER, B.FIRST_USER + 1000)))
        for mode in args.modes:
            for tool in args.tools:
                B.log(f"== {mode} ({tool})")
                r = run_mode(args, mode, tool, work, scenario, inf)
                results[(mode, tool)] = r
                B.log(f"   {r}")
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
        if args.keep:
            B.log(f"work files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    post = {"load": B.loadavg(), "busy": B.busy_percent()}
    m = B.machine()
    head = "\n".join([
        "# Relay instructions per forwarded packet (plain and recorded)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} memory, Linux {m['kernel']}",
        f"- load average before / after: {pre['load']} / {post['load']}; CPU busy in the 2 s "
        f"before / after: {pre['busy']:.0f} % / {post['busy']:.0f} %",
        f"- denwa {args.build}; {B.version(['sipp', '-v'])}; {B.version(['valgrind', '--version'])}",
        f"- load: the B3 calls (bench/sipp/uac_media.xml to an echoing bench/sipp/uas_media.xml, "
        f"100 packets/s through the relay per call), {args.calls} at once; recorded: every "
        "call recorded (stereo WAV), as B5a",
        f"- window: {args.window} s, {args.settle} s after the last call is up; instructions: "
        "every thread of denwa, user space, under callgrind; syscalls and CPU time: a second "
        "run without valgrind (perf raw_syscalls tracepoint; CPU time from each thread's schedstat)",
        f"- command: `{args.command_line}`",
        "",
    ])
    text = head + "\n" + table(results, args)
    path = B.write_report(args.name, text)
    print(table(results, args))
    print(f"written: {os.path.relpath(path, B.ROOT)}")


if __name__ == "__main__":
    main()
