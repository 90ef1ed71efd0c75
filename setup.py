# Only hooks the C helpers in; metadata is in setup.cfg.  The iovec helper
# is built by cffi, the coroutine switch helper against greenlet's C API.
import os

import greenlet
from setuptools import Extension, setup

setup(
    cffi_modules=["util/iov_build.py:ffibuilder"],
    ext_modules=[
        Extension("util._coroutine_c", ["util/coroutine_c.c"],
                  include_dirs=[os.path.dirname(greenlet.__file__)]),
    ],
)
