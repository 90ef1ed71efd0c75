"""The qcow2 format driver (QEMU's block/qcow2*.c); importing the package
registers it (block_init(bdrv_qcow2_init))."""

from drivers import bdrv_register
from drivers.qcow2.qcow2 import bdrv_qcow2

bdrv_register(bdrv_qcow2)
