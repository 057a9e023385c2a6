"""``python -m tests.mesh.crashing_app <service>``: an app that cannot start.

It says why on stdout, as a real app's traceback would, and exits with 3.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    print(f"{sys.argv[1]}: RuntimeError: Failed to bind to address 127.0.0.1:1 (simulated)")
    sys.exit(3)
