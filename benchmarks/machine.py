"""How busy the (possibly shared) machine is: every benchmark measures against it the same way."""
from __future__ import annotations

import os
import time


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (from /proc/stat)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(max_wait_s: float, *, threshold_cores: float = 0.25, window_s: float = 3.0) -> float:
    """Wait (at most `max_wait_s`) until other work on the machine uses less than `threshold_cores`.

    The machine may be shared (other people's tests, builds); figures taken while it is busy are
    unfair to whichever method runs then. Returns the load of the last window, in cores.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = machine_busy_seconds()
        time.sleep(window_s)
        load = (machine_busy_seconds() - before) / window_s
        if load < threshold_cores or time.monotonic() >= deadline:
            return load
        print(f"  waiting: other work uses {load:.1f} cores", flush=True)


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and all its descendants, live or finished.

    getrusage(RUSAGE_CHILDREN) counts only children this process has waited for; a long-lived child
    that starts the real workers (multiprocessing's fork server, whose DataLoader workers are its
    children, not ours) would hide their CPU. So live descendants are read from /proc: each one's
    own time plus the time of the children it has waited for (stat fields utime, stime, cutime,
    cstime), recursing into its live children."""
    import resource

    own, waited = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime
    return total + _live_descendants_cpu(os.getpid())


def _live_descendants_cpu(pid: int) -> float:
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:   # gone meanwhile
            continue
        parent = int(fields[1])
        children.setdefault(parent, []).append(int(entry))
        times[int(entry)] = sum(int(value) for value in fields[11:15]) / tick   # utime stime cutime cstime
    total, stack = 0.0, list(children.get(pid, []))
    while stack:
        child = stack.pop()
        total += times.get(child, 0.0)
        stack.extend(children.get(child, []))
    return total
