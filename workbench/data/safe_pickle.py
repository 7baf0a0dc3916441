"""A restricted unpickler for data files that hold only containers, bytes and numpy arrays.

Unpickling runs whatever callable a pickle names, so a data file from elsewhere must never reach
plain ``pickle.load``. :func:`safe_load` resolves only the handful of globals needed to rebuild
numpy arrays and plain builtin values; any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ...) is refused with :class:`DataError` before it can be called.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.errors import DataError
from workbench.data.limits import memory_budget_bytes, over_budget

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias there
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _refuse(what: str) -> DataError:
    return DataError(f"refused, the pickle asks for {what}; only arrays whose data the file holds are loaded")


def _checked_elements(shape: Any, what: str) -> None:
    """Refuse an array shape whose element count exceeds the memory budget (as bytes)."""
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    try:
        count = math.prod(int(d) for d in dims)
    except (TypeError, ValueError, OverflowError):
        return  # numpy itself rejects a malformed shape
    if count > memory_budget_bytes():
        raise _refuse(f"{what} with {count} elements")


class _NdarrayType:
    """Stands for ``numpy.ndarray`` inside a pickle: as the type passed to ``_reconstruct`` it
    means ``numpy.ndarray``; called directly it allocates only shapes within the memory budget."""

    def __call__(self, shape: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        _checked_elements(shape, "numpy.ndarray")
        return np.ndarray(shape, *args, **kwargs)


_NDARRAY = _NdarrayType()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` for plain arrays only, with a shape within the memory budget."""
    if subtype is not _NDARRAY and subtype is not np.ndarray:
        raise _refuse(f"an array of type {type(subtype).__name__}")
    _checked_elements(shape, "numpy.core.multiarray._reconstruct")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _sized(factory: type) -> Any:
    """``bytes``/``bytearray`` without the integer form that allocates that many zero bytes."""

    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise _refuse(f"{factory.__name__}({args[0]})")
        return factory(*args)

    return make


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("_codecs").encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _sized(bytearray),
    ("builtins", "bytes"): _sized(bytes),
    ("builtins", "complex"): complex,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "str"): str,
    ("builtins", "bool"): bool,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, what: str) -> None:
        super().__init__(file, encoding="bytes")
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 pickles, e.g. "__builtin__.set") map to their Python 3 homes.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(
                f"file {self._what}: refused, the pickle asks for {module}.{name}; only numpy arrays and "
                f"plain builtin values are loaded (nothing in the file was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(
            f"file {self._what}: refused, the pickle uses persistent ids; only plain data is loaded"
        )


def safe_loads(data: bytes, what: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only numpy arrays and builtin values; ``what`` names the source in errors.

    Python 2 strings come back as ``bytes`` (``encoding="bytes"``), as in the original CIFAR files.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), what).load()
    except DataError as err:
        text = str(err)
        raise DataError(text if text.startswith("file ") else f"file {what}: {text}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        TypeError,
        ValueError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as err:
        raise DataError(f"file {what}: not a readable data pickle ({type(err).__name__}: {err})") from None


def safe_load(path: str | Path) -> Any:
    """Read and unpickle the file at ``path`` with :func:`safe_loads`.

    A file larger than the memory budget (:mod:`workbench.data.limits`) is refused unread.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        problem = over_budget(size)
        if problem:
            raise DataError(f"file {path}: {size} bytes; reading it {problem}")
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"file {path}: cannot be read ({err.strerror or err})") from None
    return safe_loads(data, str(path))
