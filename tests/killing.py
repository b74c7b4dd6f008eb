"""Running a training job in its own process, and killing it with SIGKILL part-way through an
epoch (tests/test_kill_resume.py, tests/test_translation_kill_resume.py)."""

import os
import signal
import subprocess
import time


def run_or_kill(cmd: list[str], kill_after: float | None = None, state: str | None = None):
    """Run `cmd`; without kill_after, to the end (its stderr is returned). With kill_after (a
    fraction), SIGKILL it that far into its third epoch, timed by the resume state at `state`
    that the job rewrites at the end of every epoch; False if it finished first (nothing tested)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        return err.decode()

    def wait(cond):
        deadline = time.time() + 300
        while not cond() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)

    mtime = lambda: os.stat(state).st_mtime_ns if os.path.exists(state) else None  # noqa: E731
    wait(lambda: mtime() is not None)  # end of epoch 1
    first, t1 = mtime(), time.time()
    wait(lambda: mtime() != first)     # end of epoch 2: now we know how long an epoch takes
    time.sleep(kill_after * (time.time() - t1))
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True
