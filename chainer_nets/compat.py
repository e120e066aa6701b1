"""Chainer 7.8.1 on today's stack: NumPy 2, Python 3.11-3.12, setuptools without
``pkg_resources`` and CuPy 14 (which has no cuDNN bindings).

Chainer's last release predates all of these. Rather than editing the
installed package, :func:`install` puts a small import hook in front of the
normal one. When Python imports one of the Chainer modules listed in
:data:`SOURCE_FIXES`, the hook reads that module's own source file, applies the
listed textual fixes, and compiles the result in memory (nothing is written to
disk, no bytecode cache is touched). Every fix names the exact text it replaces;
if the text is not there (another Chainer version) the import fails with a
message instead of silently running unpatched code.

The fixes are scoped to Chainer: no removed NumPy alias (``np.float``,
``np.sctypes``, ...) is put back into the ``numpy`` namespace that user code
sees, and ``pkg_resources`` is only replaced inside Chainer's modules, by
:class:`_PkgResources`, a minimal stand-in built on ``importlib.metadata``.

Runtime fixes that cannot be expressed on source text (behaviour that changed
under NumPy 2's promotion rules) are applied by :func:`_patch_runtime` after
Chainer has been imported; each one is pinned by a test in ``tests/test_compat.py``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Chainer version the fixes below were written against.
CHAINER_VERSION = "7.8.1"

_PKG_RESOURCES_IMPORT = "import pkg_resources\n"
_PKG_RESOURCES_SHIM = "from chainer_nets.compat import pkg_resources_shim as pkg_resources\n"
_NUMPY1_OPERAND_IMPORT = "from chainer_nets.compat import numpy1_operand as _numpy1_operand\n"

#: module name -> list of (exact original text, replacement) pairs.
SOURCE_FIXES: dict[str, list[tuple[str, str]]] = {
    # numpy.distutils is gone with NumPy 2 / Python 3.12, pkg_resources with
    # setuptools 82. The macOS Accelerate check needs numpy.distutils; NumPy 2
    # wheels no longer link Accelerate's old vecLib, so it becomes a no-op.
    "chainer._environment_check": [
        ("import numpy.distutils.system_info\n", ""),
        (_PKG_RESOURCES_IMPORT, _PKG_RESOURCES_SHIM),
        (
            "blas_opt_info = numpy.distutils.system_info.get_info('blas_opt')",
            "blas_opt_info = None",
        ),
    ],
    # np.sctypes was removed in NumPy 2.0 (used at import time: chainer #8632).
    "chainer.functions.array.as_strided": [
        (
            "index_dtype = {t().itemsize: t for t in np.sctypes['int']}",
            "index_dtype = {t().itemsize: t for t in (np.int8, np.int16, np.int32, np.int64)}",
        ),
        (
            "if gy.dtype not in np.sctypes['float']:",
            "if gy.dtype not in (np.float16, np.float32, np.float64, np.longdouble):",
        ),
    ],
    # numpy.float (an alias of the builtin float) was removed in NumPy 1.24.
    "chainer.functions.array.resize_images": [
        ("dtype=numpy.float)", "dtype=numpy.float64)"),
    ],
    # NEP 50 (NumPy 2): a Python int padding no longer wraps into an unsigned
    # dtype (pad_sequence(xs, padding=-1) on uint8 raised OverflowError); cast
    # it the way NumPy 1 did. A NumPy scalar also suits CuPy's elementwise kernel.
    "chainer.functions.array.pad_sequence": [
        (
            "        y = xp.empty(shape, xs[0].dtype)\n",
            (
                "        y = xp.empty(shape, xs[0].dtype)\n"
                "        padding = numpy.asarray(self.padding).astype(y.dtype)[()]\n"
            ),
        ),
        ("y[i, l:] = self.padding", "y[i, l:] = padding"),
        (
            "(ptrs, lengths, self.padding, base, length, y)",
            "(ptrs, lengths, padding, base, length, y)",
        ),
    ],
    "chainer.dataset.convert": [
        # A third positional argument to np.maximum is deprecated in NumPy 2.4.
        (
            "numpy.maximum(shape, array.shape, shape)",
            "numpy.maximum(shape, array.shape, out=shape)",
        ),
        # Same NEP 50 padding cast as in pad_sequence (concat_examples(padding=-1)).
        (
            "device.xp.full(shape, padding, dtype=arrays[0].dtype)",
            (
                "device.xp.full(shape, numpy.asarray(padding).astype(arrays[0].dtype)[()], "
                "dtype=arrays[0].dtype)"
            ),
        ),
    ],
    # Setting ndarray.shape is deprecated in NumPy 2.5: Maxout reshaped the
    # parameter in place around a callable initializer. Hand it a view instead
    # (the freshly allocated parameter is contiguous, so reshape never copies).
    "chainer.links.activation.maxout": [
        (
            (
                "                array.shape = (out_size, pool_size, in_size)\n"
                "                initialW_orig(array)\n"
                "                array.shape = (linear_out_size, in_size)\n"
            ),
            "                initialW_orig(array.reshape(out_size, pool_size, in_size))\n",
        ),
        (
            (
                "                array.shape = (out_size, pool_size)\n"
                "                initial_bias_orig(array)\n"
                "                array.shape = linear_out_size,\n"
            ),
            "                initial_bias_orig(array.reshape(out_size, pool_size))\n",
        ),
    ],
    # NumPy 2 arrays have a ``device`` attribute ("cpu"), so debug_print no
    # longer fell back to its "CPU" label for NumPy arrays.
    "chainer.variable": [
        (
            "device = getattr(array, 'device', 'CPU')",
            (
                "device = 'CPU' if isinstance(array, numpy.ndarray) "
                "else getattr(array, 'device', 'CPU')"
            ),
        ),
    ],
    # NEP 50: running sums that start at a Python scalar (0.0, 0, sum()'s 0) no longer
    # promote float32 values. Under NumPy 1 they did (``0.0 + float32`` and
    # ``1 * float32`` were float64 when both operands were scalars or 0-d arrays), so
    # these sums were float64; now they are float32. Each value is widened to float64 as
    # NumPy 1 did (:func:`numpy1_operand`; CuPy values are left alone).
    # reporter.Summary: every LogReport / PrintReport / PlotReport average, the Evaluator's
    # means, the triggers' inputs and make_statistics() (for 20,000 values 2.3 +- 0.05 the
    # float32 std came out 0.8% low, the mean 2e-6 off).
    "chainer.reporter": [
        ("import chainerx\n", "import chainerx\n" + _NUMPY1_OPERAND_IMPORT),
        (
            "            self._x += weight * value\n",
            "            value = _numpy1_operand(value)\n            self._x += weight * value\n",
        ),
    ],
    # MicroAverage: numerator and denominator sums start at the int 0.
    "chainer.training.extensions.micro_average": [
        (
            "from chainer import reporter\n",
            "from chainer import reporter\n" + _NUMPY1_OPERAND_IMPORT,
        ),
        (
            "self._numerator += observation[self._numerator_key]",
            "self._numerator += _numpy1_operand(observation[self._numerator_key])",
        ),
        (
            "self._denominator += observation[self._denominator_key]",
            "self._denominator += _numpy1_operand(observation[self._denominator_key])",
        ),
    ],
    # GradientClipping: the squared norms of all gradients are summed by sum() from 0.
    "chainer.optimizer_hooks.gradient_clipping": [
        ("import six\n", "import six\n" + _NUMPY1_OPERAND_IMPORT),
        ("dots.append(g.dot(g))", "dots.append(_numpy1_operand(g.dot(g)))"),
    ],
    # Thread.setDaemon() is deprecated since Python 3.10.
    "chainer.iterators.multiprocess_iterator": [
        ("thread.setDaemon(True)", "thread.daemon = True"),
    ],
    # h5py 3 reads string datasets as bytes: the str value came back as "b'abc'".
    "chainer.serializers.hdf5": [
        (
            "            value = type(value)(numpy.asarray(dataset))\n",
            (
                "            data = numpy.asarray(dataset)\n"
                "            if isinstance(value, str) and isinstance(data[()], bytes):\n"
                "                data = data[()].decode('utf-8')\n"
                "            value = type(value)(data)\n"
            ),
        ),
    ],
    # chainer.testing (used by gradient checks and Chainer's own test suite).
    "chainer.testing.helper": [(_PKG_RESOURCES_IMPORT, _PKG_RESOURCES_SHIM)],
    "chainer.testing.doctest_helper": [(_PKG_RESOURCES_IMPORT, _PKG_RESOURCES_SHIM)],
}


def numpy1_operand(value: Any) -> Any:
    """``value`` widened to float64 if it is a NumPy float narrower than that, else unchanged.

    Under NumPy 1, adding a NumPy float32 scalar or 0-d array to a sum that started at a
    Python scalar gave float64; NEP 50 keeps float32. Fixes that restore a float64 sum pass
    each added value through this. Arrays of other libraries (CuPy) are returned as they are.
    """
    if (
        isinstance(value, np.ndarray | np.generic)
        and value.dtype.kind == "f"
        and value.itemsize < 8
    ):
        return value.astype(np.float64)
    return value


class CompatError(ImportError):
    """Raised when a Chainer module does not contain the text a fix expects."""


def apply_fixes(name: str, source: str, fixes: Sequence[tuple[str, str]]) -> str:
    """Return ``source`` with every ``(old, new)`` fix applied; each ``old`` must occur."""
    for old, new in fixes:
        if old not in source:
            raise CompatError(
                f"chainer_nets.compat: cannot patch {name}: expected text {old!r} not found. "
                f"chainer_nets supports Chainer {CHAINER_VERSION} only "
                "(pip install --no-build-isolation chainer==7.8.1)."
            )
        source = source.replace(old, new)
    return source


class _FixingLoader(importlib.machinery.SourceFileLoader):
    """Source loader that compiles a Chainer module with its fixes applied."""

    def get_code(self, fullname: str) -> types.CodeType:
        """Compile the patched source, bypassing the bytecode cache in both directions."""
        source = self.get_data(self.path).decode("utf-8")
        source = apply_fixes(fullname, source, SOURCE_FIXES[fullname])
        return compile(source, self.path, "exec", dont_inherit=True, optimize=-1)


class _FixingFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that hands the modules in SOURCE_FIXES to _FixingLoader."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """Spec with the fixing loader for a listed module, else None (normal import)."""
        if fullname not in SOURCE_FIXES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _FixingLoader(fullname, spec.origin)
        return spec


class _PkgResources(types.ModuleType):
    """The few ``pkg_resources`` names Chainer uses, on ``importlib.metadata``."""

    class ResolutionError(Exception):
        """A requirement could not be met."""

    class DistributionNotFound(ResolutionError):
        """The required distribution is not installed."""

    class VersionConflict(ResolutionError):
        """The installed version does not satisfy the requirement."""

    class _Distribution:
        def __init__(self, name: str, version: str) -> None:
            self.project_name = name
            self.version = version

    def __init__(self) -> None:
        super().__init__("pkg_resources_shim")
        shim = self

        class WorkingSet:
            """Stand-in for pkg_resources.WorkingSet: only ``require``."""

            def require(self, *requirements: str) -> None:
                for requirement in requirements:
                    shim.require(requirement)

        self.WorkingSet = WorkingSet

    def get_distribution(self, name: str) -> _Distribution:
        """Name and version of an installed distribution."""
        try:
            return self._Distribution(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError as e:
            raise self.DistributionNotFound(name) from e

    def require(self, requirement: str) -> None:
        """Raise DistributionNotFound or VersionConflict unless ``requirement`` is met."""
        from packaging.requirements import Requirement

        req = Requirement(requirement)
        dist = self.get_distribution(req.name)
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            raise self.VersionConflict(f"{req.name} {dist.version} does not satisfy {req}")


pkg_resources_shim = _PkgResources()

_installed = False


def install() -> None:
    """Make ``import chainer`` work on the current stack (idempotent)."""
    global _installed
    if _installed:
        return
    if any(name == "chainer" or name.startswith("chainer.") for name in sys.modules):
        loaded = [n for n in SOURCE_FIXES if n in sys.modules]
        if loaded:
            raise CompatError(
                "chainer was imported before chainer_nets with unpatched modules "
                f"{loaded}; import chainer_nets first."
            )
    # CuPy 14 is outside the range Chainer 7 declares (cupy<8); chainer_nets
    # checks the combination itself, so Chainer's import-time warning is noise.
    os.environ.setdefault("CHAINER_WARN_VERSION_MISMATCH", "0")
    sys.meta_path.insert(0, _FixingFinder())
    _installed = True
    import chainer  # noqa: F401  (imported here so the runtime patches can follow)

    _patch_runtime()


def _patch_runtime() -> None:
    """Fixes for behaviour that changed at run time under NumPy 2 (none need code today)."""
