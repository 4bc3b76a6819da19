"""`python -m trioka` from a checkout's root, without installing it first.

The repository root is the package `trioka` itself, so Python started in the root looks for a
`trioka` inside it and would find none. This stand-in makes itself that package: its `__path__`
is the root, so `trioka.broker`, `trioka.__main__` and every other module resolve to the root's
files, and it runs the root's `__init__.py` as its own. An installed package does not carry it
(pyproject.toml names its packages), and where the package is installed it changes nothing but
which file `import trioka` reads first in the root.
"""

import os as _os

__path__ = [_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))]
__file__ = _os.path.join(__path__[0], "__init__.py")
with open(__file__, encoding="utf-8") as _source:
    exec(compile(_source.read(), __file__, "exec"))
del _os, _source
