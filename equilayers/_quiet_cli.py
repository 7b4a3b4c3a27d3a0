"""Our command line (``equilayers ...``, ``python -m equilayers ...``) prints only its own output.

Without NumPy (the core install does not need it) torch warns at import that it could not
initialise NumPy. When this package is imported by its command line, before anything imported
torch, torch is imported here with exactly that warning ignored. Library imports are left alone:
a user's ``import equilayers`` still shows torch's warning (tests/test_package.py).
"""

from __future__ import annotations

import os
import sys
import warnings

# sys.argv[0] is "-m" while `python -m equilayers` imports the package; the console script's name
_CLI = ("-m", "equilayers", "equilayers.exe")

if "torch" not in sys.modules and sys.argv[:1] and os.path.basename(sys.argv[0]) in _CLI:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy",
                                category=UserWarning)
        import torch  # noqa: F401
