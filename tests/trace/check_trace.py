#!/usr/bin/env python3
"""The trace of a known scenario (TraceScenario.som) is valid and shows the threaded VM at work.

    check_trace.py HYDRA CLASSPATH OUT.json

runs `HYDRA run --trace OUT.json --name traced --cp CLASSPATH TraceScenario`, then checks that OUT.json is a
Chrome trace-event file in which: every thread has a name and its spans nest; the VM is owned by
at least two threads and never by two at once; the main thread's 300 ms call to usleep is a span
of at least 300 ms; a worker took the VM over from that call and ran another process meanwhile;
scavenges and a full GC appear with their byte counts; process spans name their process and
priority. Exits 1 with the reasons when anything is missing.
"""
import json
import subprocess
import sys

CALL_US = 300_000


def main():
    hydra, classpath, out = sys.argv[1:4]
    run = subprocess.run([hydra, "run", "--trace", out, "--name", "traced", "--cp", classpath, "TraceScenario"],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0 or "done" not in run.stdout:
        sys.exit(f"the scenario failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    with open(out, encoding="utf-8") as f:
        trace = json.load(f)
    problems = check(trace)
    for p in problems:
        print("FAIL:", p)
    if problems:
        sys.exit(1)
    print("trace ok:", len(trace["traceEvents"]), "events")


def check(trace):
    problems = []

    def need(cond, why):
        if not cond:
            problems.append(why)
        return cond

    events = trace.get("traceEvents")
    if not need(isinstance(events, list), "no traceEvents array"):
        return problems
    need(trace.get("otherData", {}).get("dropped_events") == 0, "events were dropped")
    meta = [e for e in events if e.get("ph") == "M"]
    timed = [e for e in events if e.get("ph") != "M"]
    for e in timed:
        if not all(isinstance(e.get(k), (int, float)) for k in ("pid", "tid", "ts")):
            problems.append(f"event without pid, tid or ts: {e}")
            return problems

    pids = {e["pid"] for e in timed}
    need(len(pids) == 1, f"one VM expected, got pids {sorted(pids)}")
    pnames = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    need(pnames == {p: "traced" for p in pids}, f"the VM's process_name should be 'traced': {pnames}")
    tnames = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    for key in {(e["pid"], e["tid"]) for e in timed}:
        need(key in tnames, f"thread {key} has events but no name")
    names = set(tnames.values())
    need("main" in names and "heartbeat" in names, f"threads 'main' and 'heartbeat' expected: {sorted(names)}")
    workers = {tid for (_, tid), n in tnames.items() if n.startswith("worker ")}
    need(workers, f"no worker thread: {sorted(names)}")
    main_tids = [tid for (_, tid), n in tnames.items() if n == "main"]
    main = main_tids[0] if main_tids else None

    # Spans per thread: B/E nest, X and instants fall inside; collect complete spans.
    spans = []          # (cat, name, tid, start, end, args)
    stacks = {}
    last_ts = {}
    for e in timed:     # the file is in time order
        tid, ts, ph = e["tid"], e["ts"], e["ph"]
        need(ts >= last_ts.get(tid, 0), f"events of thread {tid} out of time order at {ts}")
        last_ts[tid] = ts
        stack = stacks.setdefault(tid, [])
        if ph == "B":
            if e["cat"] == "process":
                need(stack and stack[-1]["cat"] == "owner",
                     f"process span outside an ownership span on thread {tid} at {ts}")
            stack.append(e)
        elif ph == "E":
            if need(stack, f"E without B on thread {tid} at {ts}"):
                b = stack.pop()
                need(b["cat"] == e.get("cat"), f"E of {e.get('cat')} closes B of {b['cat']} on thread {tid} at {ts}")
                spans.append((b["cat"], b["name"], tid, b["ts"], ts, b.get("args", {})))
        elif ph == "X":
            need(e["cat"] == "gc", f"unexpected complete event {e}")
            need(any(s["cat"] == "owner" for s in stack), f"GC outside an ownership span on thread {tid} at {ts}")
            spans.append((e["cat"], e["name"], tid, ts, ts + e["dur"], e.get("args", {})))
        elif ph == "i":
            need(e["cat"] != "trace-error", f"the recorder flagged an error: {e}")
            spans.append((e["cat"], e["name"], tid, ts, ts, e.get("args", {})))
        else:
            problems.append(f"unexpected phase {ph}: {e}")
    for tid, stack in stacks.items():
        need(not stack, f"spans left open on thread {tid}: {[b['cat'] for b in stack]}")

    owned = sorted((s for s in spans if s[0] == "owner"), key=lambda s: s[3])
    need(len({s[2] for s in owned}) >= 2, f"the VM was owned by {len({s[2] for s in owned})} thread(s), not 2 or more")
    for a, b in zip(owned, owned[1:]):
        need(b[3] >= a[4], f"two owners at once: thread {a[2]} [{a[3]}, {a[4]}] and thread {b[2]} [{b[3]}, {b[4]}]")

    calls = [s for s in spans if s[0] == "callout" and s[1] == "usleep"]
    if need(len(calls) == 1, f"one usleep callout span expected, got {len(calls)}"):
        call = calls[0]
        need(call[2] == main, f"the usleep call ran on thread {call[2]}, not on main ({main})")
        need(call[4] - call[3] >= CALL_US, f"the usleep span lasts {call[4] - call[3]} us, less than {CALL_US}")
        need(call[5].get("mode") == "threaded", f"the usleep call should be threaded: {call[5]}")
        takeovers = [s for s in spans if s[0] == "takeover"]
        if need(takeovers, "no takeover"):
            t = takeovers[0]
            need(t[2] in workers, f"the takeover happened on thread {t[2]}, not a worker")
            need(t[5].get("callout") == "usleep" and t[5].get("from_tid") == main,
                 f"the takeover should name the usleep call on main: {t[5]}")
            need(call[3] <= t[3] <= call[4], "the takeover happened outside the usleep call")
            ran = [s for s in spans if s[0] == "process" and s[2] == t[2] and call[3] <= s[3] <= call[4]
                   and s[5].get("process") != call[5].get("process")]
            need(ran, "the worker ran no other process during the call")

    gcs = [s for s in spans if s[0] == "gc"]
    need(any(s[1] == "scavenge" for s in gcs), "no scavenge")
    need(any(s[1] == "full GC" for s in gcs), "no full GC")
    for s in gcs:
        a = s[5]
        if not need(all(isinstance(a.get(k), int) and a[k] >= 0 for k in ("bytes_before", "bytes_after", "bytes_promoted")),
                    f"GC span without byte counts: {s}"):
            break

    procs = [s for s in spans if s[0] == "process"]
    need(len({s[5].get("process") for s in procs}) >= 2, "fewer than two processes ran")
    need(all(isinstance(s[5].get("priority"), int) and s[1] == f"process {s[5].get('process')}" for s in procs),
         "a process span lacks its id or priority")
    return problems


if __name__ == "__main__":
    main()
