"""`python -m trioka` in a checkout's root works before `pip install` (trioka/__init__.py, a
stand-in that makes the root the package): the broker starts, and every module is the root's."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_in_the_root_the_package_is_the_root_itself():
    out = subprocess.run(
        [sys.executable, "-c", "import trioka, trioka.broker, trioka.wire.protocol as p; "
         "print(trioka.__spec__.origin); print(trioka.__file__); print(trioka.broker.__file__); "
         "print(p.__file__); print(trioka.__version__, sorted(trioka.__all__))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0] == str(ROOT / "trioka" / "__init__.py")        # the stand-in was read
    assert out[1:4] == [str(ROOT / "__init__.py"), str(ROOT / "broker.py"),
                        str(ROOT / "wire" / "protocol.py")]
    assert out[4] == "0.1.0 ['Broker', 'Cluster', 'Config', '__version__', 'serve']"


def test_python_dash_m_trioka_runs_the_root_main():
    done = subprocess.run([sys.executable, "-m", "trioka", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "0.1.0" in done.stdout + done.stderr
