"""What a dry run can check of the data sets without loading them (torch-free, numpy-free).

A real run checks every data set its jobs read when it starts, before any job
(`threeregime.study.check_data_sets`: the set loads, or its files are there; batch sizes fit).
A dry run loads nothing: it reads an `.npz` data set's array headers (keys, dtypes, shapes,
channels-last) and says which checks only a real run makes.
"""

from __future__ import annotations

import ast
import os
import struct
import zipfile

from .spec.data import DataSpec, channels_first_problem

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")  # as threeregime.data.NPZ_KEYS
LOADS_OFFLINE = ("digits",)  # shipped with scikit-learn: nothing to find


def _npy_header(f) -> dict:
    """The header of one .npy member: {'descr': '|u1', 'fortran_order': False, 'shape': (...)}."""
    magic = f.read(8)
    if magic[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy array")
    size = struct.unpack("<H", f.read(2))[0] if magic[6] == 1 else struct.unpack("<I", f.read(4))[0]
    header = ast.literal_eval(f.read(size).decode("latin1"))
    if not isinstance(header, dict) or "shape" not in header or "descr" not in header:
        raise ValueError("no array header")
    return header


def npz_problem(path: str) -> str | None:
    """Why the .npz at `path` cannot be a data set, from its headers alone; None if it can."""
    if not os.path.exists(path):
        return f"data.root: no such .npz file: {path}"
    if os.path.isdir(path):
        return f"data.root: {path} is a folder; with data.name: npz, data.root is the .npz file itself"
    try:
        with zipfile.ZipFile(path) as z:
            members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            missing = [k for k in NPZ_KEYS if k not in members]
            if missing:
                return (f"{path}: missing arrays {missing}; an .npz data set needs {list(NPZ_KEYS)} "
                        f"(uint8 NHWC images, integer labels)")
            headers = {}
            for k in NPZ_KEYS:
                with z.open(members[k]) as f:
                    headers[k] = _npy_header(f)
    except (zipfile.BadZipFile, OSError, ValueError, SyntaxError, struct.error) as e:
        return (f"data.root: {path} is not a readable .npz file ({type(e).__name__}: {e}); "
                f"write it again with numpy.savez")
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        xs, ys = tuple(headers[x]["shape"]), tuple(headers[y]["shape"])
        if headers[x]["descr"] != "|u1" or len(xs) != 4:
            return (f"{path}: {x} must be uint8 NHWC images [N, H, W, C], got dtype {headers[x]['descr']} "
                    f"and shape {xs}")
        problem = channels_first_problem(x, xs, path)
        if problem:
            return problem
        if len(ys) != 1 or ys[0] != xs[0] or headers[y]["descr"][1:2] not in ("i", "u"):
            return (f"{path}: {y} must be integer labels [N] with N = {xs[0]}, got dtype {headers[y]['descr']} "
                    f"and shape {ys}")
    return None


def dry_run_data_notes(specs: list[DataSpec]) -> list[str]:
    """What a dry run says of the data sets its targets read: the problems found in .npz headers
    (a real run stops on them before any job), and which sets only a real run checks."""
    notes, later, seen = [], [], set()
    for spec in specs:
        where = (spec.name, str(spec.root))
        if where in seen or spec.name in LOADS_OFFLINE:
            continue
        seen.add(where)
        if spec.name == "npz":
            problem = npz_problem(str(spec.root))
            if problem:
                notes.append(f"data problem (a real run stops here, before any job): {problem}")
        else:
            later.append(f"{spec.name} under data.root = {spec.root!r}")
    if later:
        notes.append("note: a dry run loads no data set: whether " + ", ".join(later) + " is there (or "
                     "data.download is true) and the batch sizes fit is checked when the run starts, before any job")
    return notes
