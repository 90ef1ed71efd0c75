# Only hooks the cffi build of the iovec helper in; metadata is in setup.cfg.
from setuptools import setup

setup(cffi_modules=["util/iov_build.py:ffibuilder"])
