"""drivers.DRIVER_TABLE, which lets look-ups import driver modules lazily,
must say what each module really registers."""

import importlib

import drivers


def test_driver_table_matches_the_drivers():
    drivers.bdrv_init()
    for name, entry in drivers.DRIVER_TABLE.items():
        module = 'drivers.' + name
        mine = [d for d in drivers.bdrv_drivers
                if type(d).__module__.split('.')[:2] == module.split('.')]
        assert mine, name
        assert sorted(entry.format_names) == sorted(d.format_name
                                                    for d in mine)
        assert sorted(entry.protocol_names) == sorted(
            d.protocol_name for d in mine if d.protocol_name)
        assert entry.probe == any(d.bdrv_probe for d in mine), name
        assert entry.probe_device == any(d.bdrv_probe_device
                                         for d in mine), name
        importlib.import_module(module)


def test_link_order_newest_first():
    drivers.bdrv_init()
    ranks = [drivers._link_rank(d) for d in drivers.bdrv_drivers]
    assert ranks == sorted(ranks)
