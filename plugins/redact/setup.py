"""Build of ``dspy-tracekit-redact``: the engine's four modules compiled by Cython where a C compiler exists.

``_detectors``, ``_generic``, ``_prefilter`` and ``_redactor`` are plain Python (Cython's pure-Python mode: no
``.pyx``, no ``cython`` import); Cython compiles the same files to C extension modules, which Python imports in place
of the ``.py`` beside them (their findings are the same: ``tests/test_redact_compiled.py``). No compiler, a failed
compile, or ``TRACEKIT_REDACT_NO_EXTENSIONS=1`` at build time: the wheel holds the ``.py`` files only and they run
as they are. Each build records the SHA-256 of the sources it compiled (``_compiled_from.py``): a compiled module whose
``.py`` changed since is not imported (``_native.py``), so an edit in a checkout takes effect before the next build.
"""

import hashlib
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

PACKAGE = Path("src") / "dspy_tracekit_redact"
#: the engine's modules, compiled (the others are I/O and configuration: nothing there is worth a compiled copy)
COMPILED = ("_detectors", "_generic", "_prefilter", "_redactor")
#: no ``annotation_typing``: an annotation is no C-level type (Cython's would refuse a ``str`` subclass and turn an ``int``
#: parameter's 1.5 into 1); ``infer_types`` as Cython's default, only where the semantics stay Python's. (Cython's default
#: directives otherwise; with ``infer_types=False`` the compiled modules ran x1.06 the .py on PII-dense prompts, x1.15-1.2 so)
DIRECTIVES = {"language_level": 3, "annotation_typing": False}


class BuildExt(build_ext):
    """``build_ext`` that records what it compiled, and leaves a failed compile to the pure-Python modules."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:  # the modules compile side by side (an editable install passes no -j): ~45 s on 2 cores
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self.compiled: set[str] = set()  # what this build compiled (or found up to date): not an old module in place
        super().run()
        built = sorted(self.compiled)
        digests = {name: hashlib.sha256((PACKAGE / f"{name}.py").read_bytes()).hexdigest() for name in built}
        lines = ['"""Written by setup.py: the SHA-256 of each module\'s source when it was compiled."""', "",
                 f"SOURCES = {digests!r}", ""]
        target = Path(self.get_ext_fullpath(f"dspy_tracekit_redact.{COMPILED[0]}")).parent / "_compiled_from.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines))

    def build_extension(self, ext) -> None:
        if self.compiler.compiler_type == "unix":  # no debug information: ~1/4 less build time, 1/6 the size (2.4 MB)
            ext.extra_compile_args = [*ext.extra_compile_args, "-g0"]
        try:
            super().build_extension(ext)  # (skips a module whose C is older than the module: up to date)
        except Exception as exc:  # noqa: BLE001 - no compiler, no Python headers: the .py runs instead
            print(f"dspy-tracekit-redact: {ext.name} not compiled ({exc}); its pure-Python module runs")
        else:
            self.compiled.add(ext.name.rpartition(".")[2])


def extensions() -> list:
    if os.environ.get("TRACEKIT_REDACT_NO_EXTENSIONS", "").strip() not in ("", "0"):  # as _native reads it
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # an install without the build requirements (--no-build-isolation): pure Python
        return []
    return cythonize([str(PACKAGE / f"{name}.py") for name in COMPILED], compiler_directives=DIRECTIVES,
                     nthreads=2, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
