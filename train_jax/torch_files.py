"""Read a PyTorch state dict without torch: ``torch.save``'s zip format and its legacy one.

Both are pickles whose tensors point at raw storages. The zip format (PyTorch >= 1.6) keeps the
pickle in ``data.pkl`` and each storage in its own member. The legacy file (PyTorch < 1.6) is a
sequence of pickles: a magic number, a protocol version, a system-info dict, the object itself,
the list of storage keys, then each storage's raw bytes (an int64 element count, then the
elements); its tensors are rebuilt only after every storage is read, because the object comes
first. Either way only the few names a state dict of tensors holds are unpickled (an ordered
dict, the tensor rebuild functions and the storage types); anything else, code included, is
refused.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def read_torch_file(path: str | Path) -> Any:
    """A ``torch.save`` file (zip or legacy format) unpickled into numpy arrays."""
    return read_torch_legacy(path) if is_legacy(path) else read_torch_zip(path)


def torch_dtypes() -> dict[str, np.dtype]:
    """PyTorch storage class name -> numpy dtype (bfloat16 from ml_dtypes, a JAX dependency)."""
    import ml_dtypes

    return {
        "FloatStorage": np.dtype(np.float32),
        "DoubleStorage": np.dtype(np.float64),
        "HalfStorage": np.dtype(np.float16),
        "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
        "LongStorage": np.dtype(np.int64),
        "IntStorage": np.dtype(np.int32),
        "ShortStorage": np.dtype(np.int16),
        "CharStorage": np.dtype(np.int8),
        "ByteStorage": np.dtype(np.uint8),
        "BoolStorage": np.dtype(np.bool_),
    }


def rebuild_tensor(
    storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` for numpy: a strided view of the storage, copied."""
    size, stride, offset = tuple(int(n) for n in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or min((offset, *size, *stride), default=0) < 0:
        raise pickle.UnpicklingError(f"bad tensor layout: size {size}, stride {stride}")
    if not all(size):
        return np.empty(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:  # as_strided does not check: never read past the storage
        raise pickle.UnpicklingError(f"tensor of size {size} reads past its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """``torch._utils._rebuild_parameter`` for numpy: the tensor itself (or a deferred one)."""
    return data


def state_dict_global(
    module: str, name: str, dtypes: Mapping[str, np.dtype], rebuild: Callable[..., Any]
) -> Any:
    """What a state-dict pickle may name: an ordered dict, ``rebuild`` for
    ``torch._utils._rebuild_tensor_v2``, the parameter wrapper and the storage types (as
    ``dtypes``); anything else raises ``pickle.UnpicklingError``."""
    allowed = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    if (module, name) in allowed:
        return allowed[(module, name)]
    if module == "torch" and name in dtypes:
        return dtypes[name]
    raise pickle.UnpicklingError(
        f"refused {module}.{name}: only a state dict of tensors can be read without torch"
    )


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch state dict of tensors as numpy arrays; refuses every other global."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        """Unpickle ``data``; storages are read from ``archive`` under ``prefix``/data/."""
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix
        self._dtypes = torch_dtypes()
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Only the names a state dict needs; anything else raises ``pickle.UnpicklingError``."""
        return state_dict_global(module, name, self._dtypes, rebuild_tensor)

    def persistent_load(self, pid: Any) -> np.ndarray:
        """A storage record ``("storage", dtype, key, location, numel)`` -> its bytes."""
        if not (isinstance(pid, tuple) and pid[0] == "storage" and isinstance(pid[1], np.dtype)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, _numel = pid
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def read_torch_zip(path: str | Path) -> Any:
    """A ``torch.save`` file (zip format, PyTorch >= 1.6) unpickled into numpy arrays."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a PyTorch file (neither the zip nor the legacy format)")
    with zipfile.ZipFile(path) as archive:
        pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise ValueError(f"{path}: no data.pkl in the archive")
        prefix = pkl.rsplit("/", 1)[0]
        order = f"{prefix}/byteorder"
        if order in archive.namelist() and archive.read(order).strip() != b"little":
            raise ValueError(f"{path}: big-endian tensors are not supported")
        return _StateDictUnpickler(archive.read(pkl), archive, prefix).load()


# --------------------------------------------------------------------------- legacy format


@dataclasses.dataclass
class _Storage:
    """A storage named in the object pickle; its bytes come later in the file."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass
class _LazyTensor:
    """A tensor whose storage has not been read yet."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _lazy_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> Any:
    """``torch._utils._rebuild_tensor_v2``, deferred until the storages are read."""
    return _LazyTensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """The legacy file's pickles; refuses every global a state dict does not need."""

    def __init__(self, file: BinaryIO, dtypes: Mapping[str, np.dtype]) -> None:
        """Read from ``file``; ``dtypes`` maps torch storage class names to numpy dtypes."""
        super().__init__(file)
        self._dtypes = dict(dtypes)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Only the names a state dict needs; tensors are rebuilt once the storages are read."""
        return state_dict_global(module, name, self._dtypes, _lazy_tensor)

    def persistent_load(self, pid: Any) -> _Storage:
        """``("storage", dtype, key, location, numel, view_metadata)`` -> its storage."""
        if not (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and isinstance(pid[1], np.dtype)
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, dtype, key, _location, numel, view = pid
        if view is not None:
            raise pickle.UnpicklingError(f"storage views are not supported (storage {key})")
        if key not in self.storages:
            self.storages[key] = _Storage(str(key), dtype, int(numel))
        return self.storages[key]


def _read_storage(file: BinaryIO, storage: _Storage, path: Path) -> None:
    """The element count and the raw little-endian elements of one storage."""
    head = file.read(8)
    if len(head) != 8:
        raise ValueError(f"{path}: truncated at storage {storage.key}")
    (numel,) = struct.unpack("<q", head)
    if numel != storage.numel:
        raise ValueError(
            f"{path}: storage {storage.key} holds {numel} elements, not {storage.numel}"
        )
    raw = file.read(numel * storage.dtype.itemsize)
    if len(raw) != numel * storage.dtype.itemsize:
        raise ValueError(f"{path}: truncated at storage {storage.key}")
    storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))


def _materialise(obj: Any) -> Any:
    """Replace every deferred tensor in a (nested) dict by its array."""
    if isinstance(obj, _LazyTensor):
        return rebuild_tensor(obj.storage.data, obj.offset, obj.size, obj.stride)
    if isinstance(obj, Mapping):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def is_legacy(path: str | Path) -> bool:
    """Whether ``path`` starts with the legacy format's pickled magic number."""
    with open(path, "rb") as f:
        try:
            return _Unpickler(f, {}).load() == LEGACY_MAGIC
        except Exception:  # any other file: not this format
            return False


def read_torch_legacy(path: str | Path) -> Any:
    """A legacy ``torch.save`` file unpickled into numpy arrays (little-endian files only)."""
    path = Path(path)
    dtypes = torch_dtypes()
    with open(path, "rb") as f:
        header = [_Unpickler(f, {}).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: not a legacy PyTorch file")
        if not (isinstance(header[2], dict) and header[2].get("little_endian", False)):
            raise ValueError(f"{path}: big-endian tensors are not supported")
        unpickler = _Unpickler(f, dtypes)
        obj = unpickler.load()
        keys = _Unpickler(f, {}).load()
        if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
            raise ValueError(f"{path}: the storage list does not match the tensors")
        for key in keys:
            _read_storage(f, unpickler.storages[str(key)], path)
    return _materialise(obj)
