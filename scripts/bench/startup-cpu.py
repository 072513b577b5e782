#!/usr/bin/env python3
"""Start-up of short commands, by hand (docs/performance.md, "Start-up"): wall time and CPU time.

    python3 scripts/bench/startup-cpu.py RUNS LABEL 'COMMAND ARGS' [LABEL 'COMMAND ARGS' ...]

Runs the commands one after another, RUNS times over (after one untimed round that fills Node's
compile cache), so a change in the machine's load hits them alike, and prints for each the median,
quartiles and minimum of its wall time and of its CPU time (user + system, every thread, from
wait4's rusage: precise to the microsecond, where GNU time's is 10 ms). On a loaded machine the CPU
time is the figure that holds; the wall time of an idle machine is close to the minimum.
Node itself is not used to measure: it cannot read a child's rusage.
"""
import os
import shlex
import statistics
import sys
import time

runs = int(sys.argv[1])
commands = list(zip(sys.argv[2::2], sys.argv[3::2]))
wall = {label: [] for label, _ in commands}
cpu = {label: [] for label, _ in commands}
devnull = os.open(os.devnull, os.O_WRONLY)
for round_ in range(runs + 1):
    for label, command in commands:
        argv = shlex.split(command)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execvp(argv[0], argv)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{label}: {command} failed ({os.waitstatus_to_exitcode(status)})")
        if round_ > 0:
            wall[label].append(elapsed * 1000)
            cpu[label].append((usage.ru_utime + usage.ru_stime) * 1000)


def spread(values):
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values):6.1f} (quartiles {q1:6.1f} {q3:6.1f}, min {min(values):6.1f})"


print(f"{runs} runs each, alternated; load average {os.getloadavg()[0]:.1f} at the end; ms")
for label, _ in commands:
    print(f"{label:20s} wall {spread(wall[label])}  cpu {spread(cpu[label])}")
