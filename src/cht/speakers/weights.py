"""Resemblyzer's GE2E weights read without torch.

`pretrained.pt` in the `resemblyzer` 0.1.4 wheel is torch's legacy (pre-zip) format: five
pickles in a row (magic number, protocol, system info, the checkpoint, the storage keys) and
then each storage's raw bytes, an int64 element count before each. The checkpoint's tensors
point into storages by key, so they are rebuilt as numpy views once the bytes are read.
Installing `resemblyzer` with its dependencies would bring several GB of torch, so cht installs
the wheel with `--no-deps` and only reads this one file of it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cht.errors import ChtError

MAGIC = 0x1950A86A20F9469CFC6C
INSTALL = "pip install --no-deps resemblyzer==0.1.4"
FILE = "resemblyzer/pretrained.pt"
ENV = "CHT_SPEAKER_WEIGHTS"  # another copy of pretrained.pt
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
NAMES = ("lstm.weight_ih_l{i}", "lstm.weight_hh_l{i}", "lstm.bias_ih_l{i}", "lstm.bias_hh_l{i}")


class WeightsError(ChtError):
    """The speaker model's weights are missing or unreadable: says how to put them back."""


@dataclass
class _Storage:
    dtype: type
    size: int
    data: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        item = np.dtype(self.storage.dtype).itemsize
        flat = self.storage.data
        return np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape,
                                               [s * item for s in self.stride]).copy()


class _Unpickler(pickle.Unpickler):
    """Knows the handful of torch globals a state dict pickles, as plain stand-ins."""

    def __init__(self, f, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, stride, *rest: _Tensor(storage, offset, tuple(shape), tuple(stride))
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, size, view = saved_id
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return self.storages.setdefault(str(key), _Storage(dtype, int(size)))


def default_path() -> Path | None:
    """`CHT_SPEAKER_WEIGHTS` if set, else the weights inside the installed resemblyzer wheel
    (its Python code is never imported: it needs torch)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    try:
        return Path(str(importlib.metadata.distribution("resemblyzer").locate_file(FILE)))
    except importlib.metadata.PackageNotFoundError:
        return None


def _recorded_hash(path: Path) -> str | None:
    """The sha256 the wheel's RECORD gives for the file at `path` (None: not the wheel's)."""
    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f) == FILE and f.hash is not None and f.hash.mode == "sha256" and Path(str(dist.locate_file(f))) == path:
            return f.hash.value
    return None


def load(path: Path | None = None) -> dict[str, np.ndarray]:
    """The encoder's parameters as float32 arrays by torch name, or a WeightsError."""
    path = path or default_path()
    if path is None or not path.is_file():
        raise WeightsError(f"speaker model weights not found: run `{INSTALL}`")
    try:
        raw = path.read_bytes()
        expected = _recorded_hash(path)
        if expected is not None and base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode() != expected:
            raise ValueError("its sha256 differs from the wheel's RECORD")
        params = _read(raw)
        for i in range(3):
            for name in NAMES:
                params[name.format(i=i)]
        params["linear.weight"], params["linear.bias"]
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, struct.error, AttributeError,
            IndexError) as exc:
        raise WeightsError(f"speaker model weights in {path} are damaged ({exc if isinstance(exc, ValueError) else type(exc).__name__}): "
                           f"reinstall them with `{INSTALL.replace('install', 'install --force-reinstall')}`") from None
    return params


def _read(raw: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    if pickle.load(f) != MAGIC:
        raise ValueError("not a torch legacy file")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info
    checkpoint = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        item = np.dtype(storage.dtype).itemsize
        data = f.read(count * item)
        if count != storage.size or len(data) != count * item:
            raise ValueError("storage cut short")
        storage.data = np.frombuffer(data, dtype=storage.dtype)
    state = checkpoint["model_state"]
    return {name: t.array().astype(np.float32) for name, t in state.items() if isinstance(t, _Tensor)}
