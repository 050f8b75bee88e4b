#!/usr/bin/env python3
"""B1 yardstick for profiling: a fixed number of registrations against denwa
alone, measured by instruction count (callgrind), by CPU time (/proc) or
sampled (perf record).

Unlike the rate ladder of bench/b1_register.sh, the load is small and fixed,
so the numbers compare one build with another even on a busy machine
(instruction counts are not disturbed by other processes; CPU time is,
somewhat). The registrations are refreshes: 1000 users are registered first
(not measured), then `--count` REGISTER/401/REGISTER/200 exchanges run at
`--rate` per second.

Tools:
  callgrind  valgrind --tool=callgrind; prints instructions per registration
             (every thread of denwa, user space only) and keeps the profile
             for callgrind_annotate.
  cpu        utime + stime of denwa over the measured run, per thread.
  perf       perf record -g (cpu-clock, kernel included) over the measured
             run; the data file is kept for perf report.

Usage: bench/b1_profile.py --tool callgrind --count 3000 --out DIR
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def callgrind_total(path):
    """The `totals:` (or `summary:`) instruction count of a callgrind dump."""
    total = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
    return total


def denwa_pid(proc):
    """The process running denwa (below `timeout`)."""
    tree = bench.descendants(proc.pid)
    return tree[1] if len(tree) > 1 else tree[0]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tool", choices=["callgrind", "cpu", "perf"], default="cpu")
    p.add_argument("--count", type=int, default=3000, help="measured registrations")
    p.add_argument("--rate", type=int, help="registrations per second")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--denwa", default=os.path.join(bench.ROOT, "target", "release", "denwa"))
    p.add_argument("--out", help="directory for logs and profiles (default: a new temporary one)")
    p.add_argument(
        "--server", choices=["denwa", "kamailio"], default="denwa",
        help="kamailio: the reference server of bench/b1_register.sh (cpu tool only)",
    )
    args = p.parse_args()
    slow = args.tool == "callgrind"
    rate = args.rate or (200 if slow else 2000)
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="denwa-b1-profile-"))
    os.makedirs(out, exist_ok=True)
    wrap = []
    if slow:
        wrap = [
            "valgrind", "--tool=callgrind", "--quiet",
            f"--callgrind-out-file={out}/callgrind.out.%p",
        ]
    first, last = bench.FIRST_USER, bench.FIRST_USER + args.users - 1
    lines = [bench.auth_line(n) for n in bench.users(first, last)]
    scenario = os.path.join(bench.SCENARIOS, "register.xml")
    if args.server == "kamailio":
        if args.tool != "cpu":
            sys.exit("--server kamailio works with --tool cpu only")
        server = bench.Kamailio(out, first, last)
    else:
        server = bench.Denwa(args.denwa, out, first, last, wrap=wrap, start_s=120 if slow else 20)
    try:
        target = f"127.0.0.1:{server.port}"
        keys = ["-key", "contact_port", "5999"]
        warm = bench.run_sipp(
            target, scenario, lines, min(rate, 500), args.users,
            os.path.join(out, "warmup"), ["-l", "200", *keys], 600,
        )
        if warm["ok"] != args.users:
            sys.exit(f"warm-up registered {warm['ok']} of {args.users}:\n" + server.proc.tail())
        time.sleep(4 if slow else 1)  # a measurement boundary: let the warm-up's store writes land
        pid = denwa_pid(server.proc)
        perf = None
        if slow:
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True,
                           stdout=subprocess.DEVNULL)
        elif args.tool == "perf":
            perf = subprocess.Popen(
                ["timeout", "900", "perf", "record", "-q", "-g", "-e", "cpu-clock",
                 "-p", str(pid), "-o", os.path.join(out, "perf.data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # perf needs a moment to attach
        c0, t0 = server.proc.cpu_seconds(), server.proc.threads()
        m0 = server.proc.pss_mib()
        res = bench.run_sipp(
            target, scenario, lines, rate, args.count, os.path.join(out, "measured"),
            ["-l", str(max(200, rate)), *keys], args.count / rate * 4 + 60,
        )
        time.sleep(1)  # let queued store writes land inside the window
        cpu = server.proc.cpu_seconds() - c0
        threads = bench.thread_delta(t0, server.proc.threads())
        m1 = server.proc.pss_mib()
        ir = None
        if slow:
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True,
                           stdout=subprocess.DEVNULL)
            dumps = sorted(
                (f for f in os.listdir(out) if f.startswith(f"callgrind.out.{pid}.")),
                key=lambda f: os.path.getmtime(os.path.join(out, f)),
            )
            if dumps:
                ir = callgrind_total(os.path.join(out, dumps[-1]))
        if perf:
            perf.send_signal(2)
            perf.wait(timeout=60)
    finally:
        server.proc.stop()
    ok = res["ok"]
    print(f"registrations: {ok} of {args.count} at {rate}/s, retransmissions {res['retrans']}")
    if ok:
        print(f"CPU: {cpu:.2f} s, {cpu / ok * 1e6:.1f} µs/registration ({threads})")
        print(f"memory: {m0:.0f} MiB before, {m1:.0f} MiB after, {(m1 - m0) * 1024 / ok:.2f} KiB/registration")
        if ir is not None:
            print(f"instructions: {ir}, {ir / ok:.0f} per registration")
    print(f"files: {out}")


if __name__ == "__main__":
    main()
