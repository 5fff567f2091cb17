"""The library's version, in a module of its own so that any module can read it without a cycle.

``autoregressive/__init__.py`` imports every submodule, so a submodule that imported the
package root for ``__version__`` would import itself in a circle.
"""

__version__ = "0.1.0"
