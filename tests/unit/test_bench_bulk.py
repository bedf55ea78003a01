"""The bulk suite's CPU accounting: how much of a core each process took, and the ceiling it sets."""

from __future__ import annotations

import math
import subprocess
import sys
import time

from ops.bench.bulk import ceiling, cpu_seconds


def test_the_ceiling_is_encode_time_over_all_the_cpu_work_spread_over_the_cores() -> None:
    # the model alone: 100 s of wall and 200 s of CPU on 2 cores; 40 s of other work must fit too
    assert ceiling(100.0, 200.0, 40.0, 2) == round(100.0 / 120.0, 3)
    assert ceiling(100.0, 200.0, 0.0, 2) == 1.0  # nothing else to run: the model is the limit
    assert ceiling(100.0, 100.0, 0.0, 2) == 1.0  # never above 1
    assert math.isnan(ceiling(1.0, 0.0, 0.0, 2))


def test_cpu_seconds_counts_a_process_and_its_children() -> None:
    busy = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import subprocess,sys,time\nsubprocess.Popen([sys.executable,'-c',{busy!r}])\n"
                               f"exec({busy!r})"])
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(parent.pid) < 1.1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cpu_seconds(parent.pid) >= 1.1, "both the parent's and the child's 0.6 s of CPU"
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
    assert math.isnan(cpu_seconds(parent.pid))
    assert math.isnan(cpu_seconds(None))
