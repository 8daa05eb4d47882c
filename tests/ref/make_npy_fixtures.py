#!/usr/bin/python3
"""Writes the .npy fixtures of tests/unit/test_npy.c with NumPy.

/usr/bin/python3 tests/ref/make_npy_fixtures.py   (from the repository root)
"""
import io

import numpy as np

D = "tests/data/npy/"
np.save(D + "f32_2x3.npy", np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
np.save(D + "f64_scalar.npy", np.array(-2.5))
np.save(D + "i32_4.npy", np.array([1, -2, 3, 2147483647], dtype=np.int32))
np.save(D + "i64_2x2.npy", np.array([[1, 2**40], [-3, -(2**62)]], dtype=np.int64))
np.save(D + "bool_3.npy", np.array([True, False, True]))
np.save(D + "f32_0x2.npy", np.zeros((0, 2), dtype=np.float32))

# format 2.0 (u32 header length), as numpy writes it when asked
with open(D + "v2_i64_3.npy", "wb") as f:
    np.lib.format.write_array(f, np.array([7, 8, 9], dtype=np.int64), version=(2, 0))

# a header with other spacing and key order, still valid Python
arr = np.array([1.5, -1.0], dtype=np.float32)
head = "{ 'shape' : (2 ,),'fortran_order':False,\"descr\":'<f4'   }"
head += " " * ((64 - (10 + len(head) + 1) % 64) % 64) + "\n"
with open(D + "spacing_f32_2.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode())
    f.write(arr.tobytes())

np.save(D + "fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
np.save(D + "bigendian.npy", np.arange(3, dtype=">f4"))
np.save(D + "f16.npy", np.arange(3, dtype=np.float16))
