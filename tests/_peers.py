"""The skip messages of the tests that compare against optional peers (escnn, kornia,
antialiased-cnns).

In this environment escnn may well be missing while the same tests pass elsewhere: ``make test``
runs them first in a second venv, ``.venv-peers`` (``make test-peers``), because escnn needs
numpy<2 and gfortran. The message says so instead of suggesting that they never ran.
"""

ESCNN_MISSING = ("escnn is not installed in this environment; `make test` runs these tests in "
                 "the .venv-peers venv (`make test-peers`, which installs escnn where gfortran "
                 "is available); to run them here: pip install -e '.[escnn]' (py3nj needs "
                 "gfortran)")

KORNIA_MISSING = ("kornia is not installed in this environment; `make test` runs these tests in "
                  "the .venv-peers venv (`make test-peers`, which installs kornia 0.9.0 beside "
                  "escnn); to run them here: pip install kornia==0.9.0")

ANTIALIASED_CNNS_MISSING = ("antialiased-cnns is not installed in this environment; `make test` "
                            "runs these tests in the .venv-peers venv (`make test-peers`, which "
                            "installs antialiased-cnns 0.3 beside escnn); to run them here: pip "
                            "install antialiased-cnns==0.3")
