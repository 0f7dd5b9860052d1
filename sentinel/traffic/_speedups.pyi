# The compiled capture fast path (_speedups.c); capture._walk_python and decode._decode_headers_numpy are
# the same functions in Python.
import numpy as np
import numpy.typing as npt

def walk(
    buf: memoryview | bytes,
    start: int,
    offsets: npt.NDArray[np.int64],
    fields: npt.NDArray[np.uint32],
    swap: bool,
    max_record: int,
    /,
) -> tuple[int, int]: ...
def decode_headers(
    buf: memoryview | bytes,
    data: npt.NDArray[np.int64],
    caplen: npt.NDArray[np.int64],
    linktype: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    /,
) -> None: ...
def index_get(
    keys: npt.NDArray[np.uint64],
    values: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int64],
    /,
) -> None: ...
def index_cells(
    keys: npt.NDArray[np.uint64],
    values: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int64],
    /,
) -> None: ...
def index_place(
    keys: npt.NDArray[np.uint64],
    values: npt.NDArray[np.int64],
    new_keys: npt.NDArray[np.uint64],
    new_values: npt.NDArray[np.int64],
    /,
) -> int: ...
def set_contains(
    cells: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64], out: npt.NDArray[np.uint8], /
) -> None: ...
def set_place(cells: npt.NDArray[np.uint64], new_keys: npt.NDArray[np.uint64], /) -> int: ...
def distinct(keys: npt.NDArray[np.uint64], first: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64], /) -> int: ...
