#!/usr/bin/env python3
"""denwa benchmarks: B1 (registrar) and B2 (call setup), each against denwa
and, in the same run, against a reference Kamailio (bench/kamailio.cfg).

Run through bench/b1_register.sh and bench/b2_calls.sh. Everything runs on
127.0.0.1; every process is started under `timeout` and stopped by its PID;
every SIPp run has a bounded call count.
"""

import argparse
import datetime
import glob
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = os.path.join(HERE, "sipp")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REALM = "bench.local"
PW_PREFIX = "bench-pw-"
FIRST_USER = 1000
KAMAILIO_B2_SHM_MIB = 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def free_port():
    """A port free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
            finally:
                t.close()
        finally:
            u.close()
    raise RuntimeError("no free port on 127.0.0.1")


def proc_stat(pid):
    """(ppid, utime + stime in ticks) of one process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]) + int(fields[12])


def descendants(root):
    """root and every process below it."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root):
    """utime + stime of root and all its descendants, in seconds."""
    total = 0
    for pid in descendants(root):
        st = proc_stat(pid)
        if st:
            total += st[1]
    return total / CLK_TCK


def thread_cpu_seconds(root):
    """{thread name: utime + stime in seconds} over the live threads of the
    process tree below root (threads that ended are not counted)."""
    out = {}
    for pid in descendants(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_delta(before, after):
    """'name s, ...' for the threads that used CPU between two samples."""
    d = {k: v - before.get(k, 0) for k, v in after.items()}
    busy = sorted(((v, k) for k, v in d.items() if v >= 0.01), reverse=True)
    return ", ".join(f"{k} {v:.2f}" for v, k in busy) or "-"


def tree_pss_mib(root):
    """Proportional set size of the process tree (shared memory, such as
    Kamailio's shm pool, divided among the processes that map it)."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Proc:
    """A long-running process started as `timeout LIMIT cmd...`."""

    def __init__(self, name, cmd, limit_s, logfile, cwd=None):
        self.name = name
        self.logfile = logfile
        out = open(logfile, "ab")
        self.popen = subprocess.Popen(
            ["timeout", str(int(limit_s)), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        out.close()
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def cpu_seconds(self):
        return tree_cpu_seconds(self.pid)

    def threads(self):
        return thread_cpu_seconds(self.pid)

    def pss_mib(self):
        return tree_pss_mib(self.pid)

    def stop(self):
        """SIGTERM (timeout passes it on), then SIGKILL by PID if needed."""
        if not self.alive():
            return
        tree = descendants(self.pid)
        try:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.popen.wait(timeout=5)
        # Anything the process left behind (kamailio's children exit with
        # their parent; this only catches stragglers of our own tree).
        for pid in tree:
            if proc_stat(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def tail(self, n=20):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def sip_ping(port, timeout_s=20):
    """Wait until something answers an OPTIONS on 127.0.0.1:port."""
    deadline = time.time() + timeout_s
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    lport = s.getsockname()[1]
    n = 0
    try:
        while time.time() < deadline:
            n += 1
            msg = (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-ping{n}\r\n"
                f"From: <sip:ping@127.0.0.1>;tag=p{n}\r\n"
                f"To: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: ping-{n}-{lport}\r\n"
                f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                data = s.recv(4096)
                if data.startswith(b"SIP/2.0"):
                    return True
            except socket.timeout:
                pass
        return False
    finally:
        s.close()


# ------------------------------------------------------------------ servers


def users(first, last):
    return range(first, last + 1)


def password(n):
    return f"{PW_PREFIX}{n}"


# Benchmarks measure signalling and relaying; recording is measured on its
# own (B5a in bench/b3_media.py).
NO_RECORDING = "[recording]\nenabled = false\n"


class Denwa:
    label = "denwa"

    def __init__(
        self, binary, workdir, first, last, rtp=(16000, 32000), sip_extra="", wrap=(),
        start_s=20, sections="",
    ):
        self.dir = os.path.join(workdir, "denwa")
        os.makedirs(self.dir)
        self.port = free_port()
        self.http = free_port()
        exts = "".join(
            f'[[extensions]]\nnumber = "{n}"\npassword = "{password(n)}"\n\n'
            for n in users(first, last)
        )
        cfg = (
            f'[sip]\nudp = ["127.0.0.1:{self.port}"]\ntcp = []\ndomain = "{REALM}"\n{sip_extra}\n'
            f'[auth]\nalgorithms = ["MD5"]\n\n'
            f"[media]\nrtp_port_min = {rtp[0]}\nrtp_port_max = {rtp[1]}\n\n"
            f'[storage]\ndata_dir = "data"\n\n'
            f'[log]\nlevel = "warn"\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.http}"\n\n'
            f"{sections or NO_RECORDING}\n"
            f"[calls]\n\n{exts}"
        )
        self.config = os.path.join(self.dir, "denwa.toml")
        with open(self.config, "w") as f:
            f.write(cfg)
        self.proc = Proc(
            "denwa",
            [*wrap, binary, "run", "--config", self.config],
            3600,
            os.path.join(self.dir, "denwa.log"),
        )
        if not (sip_ping(self.port, start_s) and self.http_get("/healthz")):
            self.proc.stop()
            raise RuntimeError("denwa did not start:\n" + self.proc.tail())

    def http_get(self, path):
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http}{path}", timeout=2
                ) as r:
                    return r.read().decode()
            except OSError:
                time.sleep(0.1)  # polling a condition, bounded
        return None

    def metric(self, series):
        body = self.http_get("/metrics") or ""
        for line in body.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def settle(self, timeout_s=30):
        """Wait (bounded) until no call is active."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if (self.metric("denwa_calls_active") or 0) == 0:
                return True
            time.sleep(0.2)  # polling a condition, bounded
        return False


class Kamailio:
    label = "kamailio"

    def __init__(self, workdir, first, last, shm_mib=256):
        self.dir = os.path.join(workdir, "kamailio")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = Proc(
            "kamailio",
            [
                "kamailio",
                "-f", os.path.join(HERE, "kamailio.cfg"),
                "-DD", "-E",
                "-m", str(shm_mib), "-M", "16",
                "-Y", self.dir,
                "-l", f"udp:127.0.0.1:{self.port}",
                "-A", f"BENCH_FIRST={first}",
                "-A", f"BENCH_LAST={last}",
                "-A", f'BENCH_PW_PREFIX="{PW_PREFIX}"',
                "-A", f'BENCH_REALM="{REALM}"',
            ],
            3600,
            os.path.join(self.dir, "kamailio.log"),
        )
        if not sip_ping(self.port):
            self.proc.stop()
            raise RuntimeError("kamailio did not start:\n" + self.proc.tail())

    def settle(self, timeout_s=30):
        return True


# --------------------------------------------------------------------- SIPp


def parse_stat(path):
    """Last row of a SIPp -trace_stat file as {column: value}."""
    with open(path, errors="replace") as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    head, last = rows[0], rows[-1]
    return dict(zip(head, last))


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def parse_rtt(directory):
    """{rtd number: [(time since SIPp start ms, response time ms)]}."""
    out = {}
    for path in glob.glob(os.path.join(directory, "*_rtt.csv")):
        with open(path, errors="replace") as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) != 3 or not parts[0][:1].isdigit():
                    continue
                out.setdefault(parts[2], []).append(
                    (float(parts[0]), float(parts[1]))
                )
    return out


def sipp_args(target, scenario, port, workdir, extra):
    """SIPp command line; target None for a server (UAS)."""
    return [
        "sipp",
        *([target] if target else []),
        "-sf", scenario,
        "-i", "127.0.0.1",
        "-p", str(port),
        "-nostdin",
        "-buff_size", "4194304",
        "-trace_err", "-error_file", os.path.join(workdir, "errors.log"),
        *extra,
    ]


def run_sipp(target, scenario, inf_lines, rate, count, workdir, extra, limit_s):
    """One bounded SIPp client run; returns its measurements."""
    os.makedirs(workdir)
    inf = os.path.join(workdir, "users.csv")
    with open(inf, "w") as f:
        f.write("SEQUENTIAL\n" + "".join(line + "\n" for line in inf_lines))
    stat = os.path.join(workdir, "stat.csv")
    args = sipp_args(
        target,
        scenario,
        free_port(),
        workdir,
        [
            "-inf", inf,
            "-r", str(rate),
            "-m", str(count),
            "-trace_stat", "-stf", stat, "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1",
            "-recv_timeout", "10s",
            "-timeout", f"{int(limit_s)}s",
            *extra,
        ],
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(os.path.join(workdir, "sipp.out"), "wb") as out:
        rc = subprocess.run(
            ["timeout", str(int(limit_s) + 15), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        ).returncode
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    st = parse_stat(stat) if os.path.exists(stat) else {}

    def num(key):
        try:
            return int(float(st.get(key, "0")))
        except ValueError:
            return 0

    return {
        "rc": rc,
        "wall": wall,
        "sipp_cpu": sipp_cpu,
        "ok": num("SuccessfulCall(C)"),
        "failed": num("FailedCall(C)"),
        "retrans": num("Retransmissions(C)"),
        "rtt": parse_rtt(workdir),
    }


# ---------------------------------------------------------------- machine


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "mem": mem,
        "kernel": platform.release(),
    }


def busy_percent(seconds=2.0):
    """Share of all CPUs that was not idle over a short sample."""

    def sample():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + vals[4]
        return idle, sum(vals)

    i0, t0 = sample()
    time.sleep(seconds)  # a measurement window, not synchronisation
    i1, t1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def version(cmd):
    try:
        out = subprocess.run(
            ["timeout", "10", *cmd], capture_output=True, text=True
        )
        text = (out.stdout + out.stderr).strip().splitlines()
        return next((l.strip() for l in text if l.strip()), "?")
    except OSError:
        return "?"


def git_rev():
    try:
        rev = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
            capture_output=True, text=True,
        ).stdout.strip()
        return rev + (" (with uncommitted changes in src/)" if dirty else "")
    except OSError:
        return "?"


def denwa_binary(args):
    """The binary to run and how it was obtained. Without --denwa, bring
    target/release/denwa up to date with the tree first (a no-op when it is)."""
    if args.denwa:
        return args.denwa, f"given binary {args.denwa}"
    path = os.path.join(ROOT, "target", "release", "denwa")
    rev = git_rev()
    log("cargo build --release --locked ...")
    built = subprocess.run(
        ["timeout", "3000", "cargo", "build", "--release", "--locked"], cwd=ROOT
    ).returncode == 0
    if built:
        return path, f"{rev}, release build"
    if not os.path.exists(path):
        sys.exit("denwa does not build and there is no earlier release binary")
    log("warning: the build failed; running the earlier release binary")
    return path, f"release binary older than {rev} (the tree did not build)"


# ------------------------------------------------------------------ ladders


def fmt_ms(v):
    """SIPp measures response times in whole milliseconds."""
    if v is None:
        return "-"
    return "<1" if v < 1 else f"{v:.0f}"


def step_summary(res, rate, count, server_cpu, rtd="1"):
    samples = sorted(res["rtt"].get(rtd, []))
    times = sorted(v for _, v in samples)
    # Achieved rate: completed setups per second between the first and the
    # last one (the hold time and teardown of the last calls do not count).
    if len(samples) > 1 and samples[-1][0] > samples[0][0]:
        achieved = (len(samples) - 1) / ((samples[-1][0] - samples[0][0]) / 1000)
    else:
        achieved = 0.0
    ok = res["ok"]
    success = ok / count if count else 0.0
    return {
        "rate": rate,
        "count": count,
        "ok": ok,
        "failed": count - ok,
        "success": success,
        "achieved": achieved,
        "retrans": res["retrans"],
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "max": times[-1] if times else None,
        "cpu": server_cpu,
        "cpu_per_op_us": (server_cpu / ok * 1e6) if ok else None,
        "sipp_cpu_pct": 100 * res["sipp_cpu"] / max(res["wall"], 1e-9),
        "passed": success >= 0.999 and achieved >= 0.95 * rate,
        "clean": success >= 0.999 and achieved >= 0.95 * rate and res["retrans"] == 0,
    }


def best(steps, key):
    """The last step of the unbroken run of steps, from the bottom of the
    ladder, that meet `key` (a later step that meets it after one that did
    not does not count)."""
    top = None
    for s in steps:
        if not s[key]:
            break
        top = s
    return top


def ladder_table(steps, extra_cols=()):
    head = (
        "| target /s | achieved /s | calls | failed | success % | retrans "
        "| p50 ms | p99 ms | max ms | server CPU s | CPU µs/op | SIPp CPU % |"
    )
    for c, _ in extra_cols:
        head += f" {c} |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in steps:
        per_op = "-" if s["cpu_per_op_us"] is None else f"{s['cpu_per_op_us']:.0f}"
        row = (
            f"| {s['rate']} | {s['achieved']:.0f} | {s['count']} | {s['failed']} "
            f"| {100 * s['success']:.2f} | {s['retrans']} | {fmt_ms(s['p50'])} "
            f"| {fmt_ms(s['p99'])} | {fmt_ms(s['max'])} | {s['cpu']:.2f} "
            f"| {per_op} | {s['sipp_cpu_pct']:.0f} |"
        )
        for _, f in extra_cols:
            row += f" {f(s)} |"
        lines.append(row)
    return "\n".join(lines)


def common_rate(a, b, key="passed"):
    """The highest target rate that both ladders passed."""
    top_a, top_b = best(a, key), best(b, key)
    if not top_a or not top_b:
        return None
    return min(top_a["rate"], top_b["rate"])


def at_rate(steps, rate):
    return next((s for s in steps if s["rate"] == rate), None)


def ratio(x, y):
    if x is None or y is None or y == 0:
        return None
    return x / y


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def summary_rows(results, op):
    """One row per server: highest passing and clean rates, latency and CPU
    at the highest passing rate, and CPU at the highest rate both passed."""
    head = (
        f"| server | highest rate ≥ 99.9 % /s (achieved) | highest clean rate /s "
        f"| p99 ms at highest | CPU µs/{op} at highest | CPU µs/{op} at common rate "
        f"| memory MiB |"
    )
    lines = [head, "|" + "---|" * 7]
    common = common_rate(results["denwa"]["steps"], results["kamailio"]["steps"])

    def us(s):
        return "-" if not s or s["cpu_per_op_us"] is None else f"{s['cpu_per_op_us']:.0f}"

    for label in ("denwa", "kamailio"):
        r = results[label]
        top, clean = best(r["steps"], "passed"), best(r["steps"], "clean")
        at_common = at_rate(r["steps"], common) if common else None
        lines.append(
            f"| {label} "
            + (f"| {top['rate']} ({top['achieved']:.0f}) " if top else "| none ")
            + (f"| {clean['rate']} " if clean else "| none ")
            + f"| {fmt_ms(top['p99']) if top else '-'} "
            + f"| {us(top)} | {us(at_common)} | {r['rss']:.0f} |"
        )
    return "\n".join(lines), common


def ratios(results, common):
    d, k = results["denwa"]["steps"], results["kamailio"]["steps"]
    rate_pass = ratio(
        (best(d, "passed") or {}).get("rate"), (best(k, "passed") or {}).get("rate")
    )
    rate_clean = ratio(
        (best(d, "clean") or {}).get("rate"), (best(k, "clean") or {}).get("rate")
    )
    cpu = None
    if common:
        cpu = ratio(at_rate(d, common)["cpu_per_op_us"], at_rate(k, common)["cpu_per_op_us"])
    return rate_pass, rate_clean, cpu


def header(title, args, m, pre, post, extra_lines):
    lines = [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem']} memory, Linux {m['kernel']}",
        f"- load average before / after: {pre['load']} / {post['load']}; "
        f"CPU busy in the 2 s before / after the run: {pre['busy']:.0f} % / {post['busy']:.0f} %"
        + (
            " (machine was busy: other work was running)"
            if max(pre["busy"], post["busy"]) > 15
            else " (machine was otherwise idle)"
        ),
        f"- denwa {args.build}; {version(['sipp', '-v'])}; "
        f"{version(['kamailio', '-v'])}",
        *extra_lines,
        *([f"- denwa [sip] extra (experiment): `{args.denwa_sip}`"] if args.denwa_sip else []),
        f"- command: `{args.command_line}`",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_report(name, text):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    date = datetime.date.today().isoformat()
    path = os.path.join(HERE, "results", f"{date}-{name}.md")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_server(kind, args, work, first, last, shm_mib=256):
    if kind == "denwa":
        return Denwa(args.binary, work, first, last, sip_extra=args.denwa_sip)
    return Kamailio(work, first, last, shm_mib)


def cleanup(args, work):
    if args.keep:
        log(f"work files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def auth_line(n):
    return f"{n};[authentication username={n} password={password(n)}];"


def bench_b1(args):
    first, last = FIRST_USER, FIRST_USER + args.users - 1
    lines = [auth_line(n) for n in users(first, last)]
    scenario = os.path.join(SCENARIOS, "register.xml")
    work = tempfile.mkdtemp(prefix="denwa-bench-b1-")
    pre = {"load": loadavg(), "busy": busy_percent()}
    results = {k: {"steps": [], "rss": 0} for k in ("denwa", "kamailio")}
    try:
        for kind in args.servers:
            log(f"== B1 {kind}")
            server = start_server(kind, args, work, first, last)
            try:
                target = f"127.0.0.1:{server.port}"
                warm = run_sipp(
                    target, scenario, lines, 500, args.users,
                    os.path.join(work, f"{kind}-warmup"),
                    ["-l", "200", "-key", "contact_port", "5999"], 60,
                )
                if warm["ok"] != args.users:
                    raise RuntimeError(
                        f"{kind}: warm-up registered {warm['ok']} of {args.users}:\n"
                        + server.proc.tail()
                    )
                steps = []
                for rate in args.rates:
                    count = rate * args.seconds
                    c0, t0 = server.proc.cpu_seconds(), server.proc.threads()
                    res = run_sipp(
                        target, scenario, lines, rate, count,
                        os.path.join(work, f"{kind}-{rate}"),
                        ["-l", str(max(200, rate)), "-key", "contact_port", "5999"],
                        args.seconds * 4 + 30,
                    )
                    server.settle()
                    time.sleep(1)  # let queued store writes land inside the window
                    cpu = server.proc.cpu_seconds() - c0
                    s = step_summary(res, rate, count, cpu)
                    s["threads"] = thread_delta(t0, server.proc.threads())
                    steps.append(s)
                    log(
                        f"  {rate}/s: ok {s['ok']}/{count}, achieved {s['achieved']:.0f}/s, "
                        f"retrans {s['retrans']}, p99 {fmt_ms(s['p99'])} ms, "
                        f"{s['cpu_per_op_us'] or 0:.0f} µs/reg, SIPp {s['sipp_cpu_pct']:.0f} %"
                    )
                    if not server.proc.alive():
                        raise RuntimeError(f"{kind} died:\n" + server.proc.tail())
                    if not s["passed"]:
                        break
                results[kind] = {
                    "steps": steps,
                    "rss": server.proc.pss_mib(),
                    "log": server.proc.tail(5),
                }
            finally:
                server.proc.stop()
    finally:
        cleanup(args, work)
    post = {"load": loadavg(), "busy": busy_percent()}
    table, common = summary_rows(results, "reg")
    rate_pass, rate_clean, cpu = ratios(results, common)
    summary = (
        table
        + "\n\n"
        + f"denwa / kamailio: highest rate {fmt_ratio(rate_pass)}, highest clean rate "
        f"{fmt_ratio(rate_clean)}, CPU per registration at {common or '-'}/s {fmt_ratio(cpu)}\n"
        + f"target: clean rate ratio ≥ 1.00 "
        f"({'met' if rate_clean is not None and rate_clean >= 1 else 'NOT met'}), "
        f"CPU ratio ≤ 0.67 ({'met' if cpu is not None and cpu <= 2 / 3 else 'NOT met'})\n"
    )
    text = header(
        "B1 registrar: REGISTER with MD5 digest, denwa vs Kamailio",
        args, machine(), pre, post,
        [
            f"- load: SIPp bench/sipp/register.xml (REGISTER, 401, REGISTER with credentials, 200) "
            f"over UDP, {args.users} users in turn (each already registered: refreshes), "
            f"{args.seconds} s per rate step, ladder stops at the first step below 99.9 % "
            f"success or below 95 % of the target rate",
            "- times: first REGISTER to 200 (includes the challenge round trip), SIPp's 1 ms resolution",
            "- CPU: utime + stime of the server process tree from /proc over the step "
            "(Kamailio: all its processes; children=2, -m 256 -M 16), divided by successful "
            "registrations",
            "- clean: no SIPp retransmission in this step nor in any lower one",
            "- memory: proportional set size of the server's processes at the end of the "
            "ladder (denwa keeps finished transactions 64·T1 = 32 s)",
        ],
    )
    body = (
        text
        + "## Summary\n\n" + summary + "\n"
        + "## denwa ladder\n\n"
        + ladder_table(results["denwa"]["steps"], [("denwa CPU s by thread", lambda s: s["threads"])])
        + "\n\n"
        + "## Kamailio ladder\n\n" + ladder_table(results["kamailio"]["steps"]) + "\n"
    )
    path = write_report(args.name or "b1-register", body)
    print(summary)
    print(f"written: {os.path.relpath(path, ROOT)}")


def probe_media(target, callee, caller, work, rtp_range):
    """One call with message tracing: is the SDP in the 200 denwa's?"""
    d = os.path.join(work, "probe")
    os.makedirs(d)
    inf = os.path.join(d, "users.csv")
    with open(inf, "w") as f:
        f.write("SEQUENTIAL\n" + auth_line(caller) + "\n")
    args = sipp_args(
        target, os.path.join(SCENARIOS, "uac_call.xml"), free_port(), d,
        ["-inf", inf, "-m", "1", "-s", str(callee), "-d", "100",
         "-mp", str(free_port()), "-trace_msg", "-message_file", os.path.join(d, "msg.log"),
         "-timeout", "30s"],
    )
    subprocess.run(["timeout", "45", *args], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    try:
        with open(os.path.join(d, "msg.log"), errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The 200 to the INVITE carries SDP: find its m= port.
    for block in text.split("----------------------------------------------- "):
        if "SIP/2.0 200" in block and "INVITE" in block and "m=audio" in block:
            for line in block.splitlines():
                if line.startswith("m=audio"):
                    port = int(line.split()[1])
                    c = next((l for l in block.splitlines() if l.startswith("c=IN")), "")
                    inside = rtp_range[0] <= port <= rtp_range[1]
                    return f"{c.strip()} {line.strip()} ({'in' if inside else 'NOT in'} denwa's RTP range)"
    return None


def bench_b2(args):
    first = FIRST_USER
    callee = FIRST_USER + args.users
    callers = [auth_line(n) for n in range(first, callee)]
    rtp_range = (16000, 32000)
    scenario = os.path.join(SCENARIOS, "uac_call.xml")
    work = tempfile.mkdtemp(prefix="denwa-bench-b2-")
    pre = {"load": loadavg(), "busy": busy_percent()}
    results = {k: {"steps": [], "rss": 0} for k in ("denwa", "kamailio")}
    media = None
    hold_s = args.hold_ms / 1000
    try:
        for kind in args.servers:
            log(f"== B2 {kind}")
            # tm keeps each finished transaction for its wait timer (5 s):
            # 256 MiB of shared memory runs out near 2,000 calls/s.
            server = start_server(kind, args, work, first, callee, KAMAILIO_B2_SHM_MIB)
            uas = None
            try:
                target = f"127.0.0.1:{server.port}"
                uas_dir = os.path.join(work, f"{kind}-uas")
                os.makedirs(uas_dir)
                uas_port = free_port()
                uas = Proc(
                    "sipp-uas",
                    sipp_args(None, os.path.join(SCENARIOS, "uas.xml"), uas_port, uas_dir,
                              ["-mp", str(free_port())]),
                    1800,
                    os.path.join(uas_dir, "sipp.out"),
                    cwd=uas_dir,
                )
                reg = run_sipp(
                    target, os.path.join(SCENARIOS, "register.xml"), [auth_line(callee)], 1, 1,
                    os.path.join(work, f"{kind}-register-callee"),
                    ["-key", "contact_port", str(uas_port)], 30,
                )
                if reg["ok"] != 1:
                    raise RuntimeError(f"{kind}: the callee did not register")
                if kind == "denwa":
                    media = probe_media(target, callee, first, os.path.join(work, kind), rtp_range)
                    server.settle()
                steps = []
                for rate in args.rates:
                    count = rate * args.seconds
                    c0, u0 = server.proc.cpu_seconds(), uas.cpu_seconds()
                    t0 = server.proc.threads()
                    res = run_sipp(
                        target, scenario, callers, rate, count,
                        os.path.join(work, f"{kind}-{rate}"),
                        [
                            "-s", str(callee),
                            "-d", str(args.hold_ms),
                            "-l", str(int(rate * (hold_s + 3))),
                            "-mp", str(free_port()),
                        ],
                        args.seconds * 4 + hold_s + 30,
                    )
                    server.settle()
                    time.sleep(1)  # let queued call records land inside the window
                    cpu = server.proc.cpu_seconds() - c0
                    s = step_summary(res, rate, count, cpu)
                    uas_cpu = uas.cpu_seconds() - u0
                    s["uas_cpu_pct"] = 100 * uas_cpu / max(res["wall"], 1e-9)
                    s["threads"] = thread_delta(t0, server.proc.threads())
                    auth_inv = sorted(v for _, v in res["rtt"].get("2", []))
                    s["p99_auth"] = percentile(auth_inv, 99)
                    steps.append(s)
                    log(
                        f"  {rate}/s: ok {s['ok']}/{count}, achieved {s['achieved']:.0f}/s, "
                        f"retrans {s['retrans']}, p99 {fmt_ms(s['p99'])} ms "
                        f"(auth INVITE {fmt_ms(s['p99_auth'])} ms), "
                        f"{s['cpu_per_op_us'] or 0:.0f} µs/call, SIPp UAC {s['sipp_cpu_pct']:.0f} % "
                        f"UAS {s['uas_cpu_pct']:.0f} %"
                    )
                    if not server.proc.alive():
                        raise RuntimeError(f"{kind} died:\n" + server.proc.tail())
                    if not uas.alive():
                        raise RuntimeError("SIPp UAS died:\n" + uas.tail())
                    if not s["passed"]:
                        break
                results[kind] = {"steps": steps, "rss": server.proc.pss_mib()}
            finally:
                if uas:
                    uas.stop()
                server.proc.stop()
    finally:
        cleanup(args, work)
    post = {"load": loadavg(), "busy": busy_percent()}
    table, common = summary_rows(results, "call")
    rate_pass, rate_clean, cpu = ratios(results, common)
    top = best(results["denwa"]["steps"], "passed")
    at_1000 = next(
        (s for s in results["denwa"]["steps"] if s["rate"] >= 1000 and s["passed"]), None
    )
    target_met = at_1000 is not None and at_1000["p99"] is not None and at_1000["p99"] < 10
    summary = (
        table
        + "\n\n"
        + f"denwa / kamailio: highest rate {fmt_ratio(rate_pass)}, highest clean rate "
        f"{fmt_ratio(rate_clean)}, CPU per call at {common or '-'}/s {fmt_ratio(cpu)}\n"
        + f"target: denwa ≥ 1000 calls/s at ≥ 99.9 % with p99 INVITE→200 < 10 ms: "
        + ("met" if target_met else "NOT met")
        + (f" (at {at_1000['rate']}/s: p99 {fmt_ms(at_1000['p99'])} ms)" if at_1000 else "")
        + "\n"
    )
    text = header(
        "B2 call setup: SIPp UAC -> server -> SIPp UAS, denwa (B2BUA, media anchored) vs Kamailio (stateful proxy)",
        args, machine(), pre, post,
        [
            f"- load: SIPp bench/sipp/uac_call.xml (INVITE, 407, ACK, INVITE with credentials, "
            f"180, 200, ACK, {args.hold_ms} ms hold, BYE, 200) over UDP from {args.users} callers to one "
            f"callee, a registered SIPp UAS (bench/sipp/uas.xml); signalling only, no RTP sent; "
            f"{args.seconds} s per rate step, ladder stops at the first step below 99.9 % success "
            f"or below 95 % of the target rate",
            "- denwa: B2BUA, every call gets its SDP rewritten and two RTP/RTCP port pairs "
            f"bound by its relay (range {rtp_range[0]}-{rtp_range[1]}); probe call: {media or 'no SDP seen'}",
            "- Kamailio: tm + record_route, proxy digest auth (407), lookup in in-memory usrloc; "
            f"no media handling (reference only); children=2, -m {KAMAILIO_B2_SHM_MIB} -M 16 "
            "(256 MiB of shared memory runs out near 2,000 calls/s: tm keeps transactions 5 s)",
            "- times: first INVITE to 200 (includes the 407 round trip); \"auth p99\" is the "
            "authenticated INVITE to 200; SIPp's 1 ms resolution",
            "- CPU: utime + stime of the server process tree from /proc over the step, "
            "divided by answered calls (setup and teardown)",
            "- clean: no SIPp retransmission in this step nor in any lower one",
            "- memory: proportional set size of the server's processes at the end of the "
            "ladder (denwa keeps finished transactions 64·T1 = 32 s)",
        ],
    )
    extra = [
        ("auth p99 ms", lambda s: fmt_ms(s["p99_auth"])),
        ("UAS CPU %", lambda s: f"{s['uas_cpu_pct']:.0f}"),
    ]
    body = (
        text
        + "## Summary\n\n" + summary + "\n"
        + "## denwa ladder\n\n"
        + ladder_table(
            results["denwa"]["steps"],
            extra + [("denwa CPU s by thread", lambda s: s["threads"])],
        )
        + "\n\n"
        + "## Kamailio ladder\n\n" + ladder_table(results["kamailio"]["steps"], extra) + "\n"
    )
    path = write_report(args.name or "b2-calls", body)
    print(summary)
    print(f"written: {os.path.relpath(path, ROOT)}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("bench", choices=["b1", "b2"])
    p.add_argument("--rates", help="comma-separated rate ladder (per second)")
    p.add_argument("--seconds", type=int, help="seconds of load per rate step")
    p.add_argument("--users", type=int, default=1000, help="extensions used as users/callers")
    p.add_argument("--hold-ms", type=int, default=1000, help="B2: call hold time")
    p.add_argument("--denwa", help="denwa binary (default target/release/denwa, built if missing)")
    p.add_argument("--name", help="results file name after the date")
    p.add_argument("--keep", action="store_true", help="keep the work files (logs, SIPp traces)")
    p.add_argument(
        "--denwa-sip", default="", help='extra [sip] lines for denwa, e.g. "t1_ms = 50" (experiments)'
    )
    p.add_argument(
        "--servers", default="denwa,kamailio", help="which servers to run (for debugging)"
    )
    args = p.parse_args()
    defaults = {
        "b1": (
            "500,1000,2000,3000,4000,5000,6000,8000,10000,12000,14000,16000,20000,24000,28000,32000",
            5,
        ),
        "b2": ("200,500,1000,1500,2000,2500,3000,3500,4000,5000,6000,7000", 8),
    }[args.bench]
    args.rates = [int(r) for r in (args.rates or defaults[0]).split(",")]
    args.seconds = args.seconds or defaults[1]
    args.servers = [x for x in args.servers.split(",") if x in ("denwa", "kamailio")]
    args.command_line = " ".join(
        [{"b1": "bench/b1_register.sh", "b2": "bench/b2_calls.sh"}[args.bench], *sys.argv[2:]]
    )
    for tool in ("sipp", "kamailio", "timeout"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install -y sip-tester kamailio)")
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(65536, max(hard, 65536))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        pass
    # A SIGTERM (e.g. from an outer timeout) unwinds through the finally
    # blocks that stop every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Run a private copy: a rebuild during the run must not swap the binary.
    bindir = tempfile.mkdtemp(prefix="denwa-bench-bin-")
    try:
        args.binary = os.path.join(bindir, "denwa")
        source, args.build = denwa_binary(args)
        shutil.copy2(source, args.binary)
        if args.bench == "b1":
            bench_b1(args)
        else:
            bench_b2(args)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


if __name__ == "__main__":
    main()
