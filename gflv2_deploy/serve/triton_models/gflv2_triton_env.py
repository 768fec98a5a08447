"""Puts the folders of GFLV2_TRITON_SYS_PATH first on sys.path; imported first by every model.py here.

The python-backend stub runs its own interpreter and ignores PYTHONPATH, so a server whose packages
(numpy, OpenCV, onnxruntime, gflv2_deploy) live in a virtual environment names that environment's
site-packages (and, for a source checkout, the project root) in GFLV2_TRITON_SYS_PATH, separated by
os.pathsep. ``site.addsitedir`` also runs the .pth files there (editable installs). Without the
variable nothing changes: the packages are expected in the stub's own Python (e.g. the NGC container).
Written by ``gflv2-deploy triton``.
"""

import os
import site
import sys


def _prepend(entries):
    for entry in reversed([e for e in entries if e]):
        before = list(sys.path)
        site.addsitedir(entry)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + [p for p in before if p not in added]


_prepend(os.environ.get("GFLV2_TRITON_SYS_PATH", "").split(os.pathsep))
