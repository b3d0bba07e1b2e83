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
