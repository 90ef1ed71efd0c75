# Only hooks the C helpers in; metadata is in setup.cfg.  The iovec helper
# is built by cffi, the coroutine switch helper against greenlet's C API,
# the thread pool's read/write workers against the Python C API.
import os

import greenlet
from setuptools import Extension, setup

setup(
    cffi_modules=["util/iov_build.py:ffibuilder"],
    ext_modules=[
        Extension("util._coroutine_c", ["util/coroutine_c.c"],
                  include_dirs=[os.path.dirname(greenlet.__file__)]),
        Extension("util._thread_pool_c", ["util/thread_pool_c.c"]),
    ],
)
