#!/usr/bin/env python3
"""Regenerates the sysfs fixture trees used by tests/unit/pci_sysfs_test.cpp and p2p_mapper_test.cpp.

Each tree has the shape of Linux's /sys: bus/pci/devices/<bdf> are relative symlinks
(../../../devices/pci0000:00/.../<bdf>) into devices/, whose path spells the parent chain.
Files: resource ("0x%016x 0x%016x 0x%016x" lines, start end flags; all-zero = unused),
class ("0x030000"), vendor, device, and sometimes a binary config space.

Run from anywhere: python3 tests/data/sysfs/generate.py   (rewrites the trees next to it)
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

MEM = 0x200
MEM64 = 0x100000 | 0x4 | MEM  # IORESOURCE_MEM_64 plus the 64-bit BAR type bits
PREF = 0x2000 | 0x8
IO = 0x100
SIZEALIGN = 0x40000


def resource_text(bars, lines):
    out = []
    for i in range(lines):
        if i < len(bars) and bars[i] is not None:
            start, size, flags = bars[i]
            out.append("0x%016x 0x%016x 0x%016x" % (start, start + size - 1, flags))
        else:
            out.append("0x%016x 0x%016x 0x%016x" % (0, 0, 0))
    return "\n".join(out) + "\n"


def config_space(vendor, device, cls, port_type=None, acs_ctrl=None, full=True):
    c = bytearray(4096 if full else 64)
    struct.pack_into("<HH", c, 0, vendor, device)
    c[0x09] = cls & 0xFF
    c[0x0A] = (cls >> 8) & 0xFF
    c[0x0B] = (cls >> 16) & 0xFF
    c[0x0E] = 1 if (cls >> 8) == 0x0604 else 0
    if port_type is not None:
        struct.pack_into("<H", c, 0x06, 0x10)  # status: capability list
        c[0x34] = 0x40
        if full:
            c[0x40] = 0x10  # PCI Express capability
            c[0x41] = 0x00  # last
            struct.pack_into("<H", c, 0x42, 2 | (port_type << 4))
    if full and acs_ctrl is not None:
        struct.pack_into("<I", c, 0x100, 0x000D | (1 << 16))  # ACS, version 1, last
        struct.pack_into("<HH", c, 0x104, 0x005F, acs_ctrl)
    return bytes(c)


class Tree:
    def __init__(self, name):
        self.root = os.path.join(HERE, name)
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(os.path.join(self.root, "bus/pci/devices"))

    def device(self, chain, cls, vendor=0x8086, device=0x1234, bars=(), lines=None,
               config=None, resource=None, classtext=None, files=True, link=True):
        """chain: 'pci0000:00/0000:00:01.0/0000:01:00.0' (relative to devices/)."""
        d = os.path.join(self.root, "devices", chain)
        os.makedirs(d, exist_ok=True)
        name = chain.split("/")[-1]
        if files:
            if lines is None:
                lines = 17 if (cls >> 8) == 0x0604 else 13
            with open(os.path.join(d, "resource"), "w") as f:
                f.write(resource if resource is not None else resource_text(list(bars), lines))
            with open(os.path.join(d, "class"), "w") as f:
                f.write(classtext if classtext is not None else "0x%06x\n" % cls)
            with open(os.path.join(d, "vendor"), "w") as f:
                f.write("0x%04x\n" % vendor)
            with open(os.path.join(d, "device"), "w") as f:
                f.write("0x%04x\n" % device)
            if config is not None:
                with open(os.path.join(d, "config"), "wb") as f:
                    f.write(config)
        if link:
            os.symlink("../../../devices/" + chain, os.path.join(self.root, "bus/pci/devices", name))
        return d


def workstation():
    """GPU + NVMe below one PCIe switch, a multi-function NIC and a second NVMe on their own
    root ports, an integrated SATA controller, and an Intel VMD domain (10000:e0) nested
    below 0000:00:0e.0."""
    t = Tree("workstation")
    hb = "pci0000:00"
    t.device(hb + "/0000:00:00.0", 0x060000, 0x8086, 0x2020)
    rp1 = hb + "/0000:00:01.0"
    t.device(rp1, 0x060400, 0x8086, 0x2030)
    usp = rp1 + "/0000:01:00.0"
    t.device(usp, 0x060400, 0x10B5, 0x8747, bars=[(0xDD000000, 0x40000, MEM)])
    dsp0 = usp + "/0000:02:08.0"
    dsp1 = usp + "/0000:02:10.0"
    t.device(dsp0, 0x060400, 0x10B5, 0x8747)
    t.device(dsp1, 0x060400, 0x10B5, 0x8747)
    # GPU: BAR0 16 MiB registers, BAR1 256 MiB VRAM (64-bit prefetchable), BAR3 32 MiB, IO BAR5.
    t.device(dsp0 + "/0000:03:00.0", 0x030000, 0x10DE, 0x1DB6,
             bars=[(0xDE000000, 16 << 20, MEM | SIZEALIGN), (0x3800000000, 256 << 20, MEM64 | PREF),
                   None, (0x3810000000, 32 << 20, MEM64 | PREF), None, (0xE000, 0x80, IO)])
    # NVMe: BAR0 16 KiB registers, BAR2 64 MiB controller memory buffer.
    t.device(dsp1 + "/0000:04:00.0", 0x010802, 0x144D, 0xA808,
             bars=[(0xDF000000, 16 << 10, MEM64), None, (0x3820000000, 64 << 20, MEM64 | PREF)])
    rp2 = hb + "/0000:00:02.0"
    t.device(rp2, 0x060400, 0x8086, 0x2031)
    t.device(rp2 + "/0000:05:00.0", 0x020000, 0x15B3, 0x1017,
             bars=[(0x3840000000, 32 << 20, MEM64 | PREF)])
    t.device(rp2 + "/0000:05:00.1", 0x020000, 0x15B3, 0x1017,
             bars=[(0x3842000000, 32 << 20, MEM64 | PREF)])
    rp3 = hb + "/0000:00:03.0"
    t.device(rp3, 0x060400, 0x8086, 0x2032)
    t.device(rp3 + "/0000:06:00.0", 0x010802, 0x8086, 0x0A54,
             bars=[(0xDF100000, 16 << 10, MEM64), None, (0x3860000000, 16 << 20, MEM64 | PREF)])
    t.device(hb + "/0000:00:1f.2", 0x010601, 0x8086, 0xA352,
             bars=[None, None, None, None, (0xF060, 0x20, IO), (0xDF200000, 0x800, MEM)])
    # Intel VMD: its BARs are apertures holding the nested domain's BARs.
    vmd = hb + "/0000:00:0e.0"
    t.device(vmd, 0x010400, 0x8086, 0x467F,
             bars=[(0x3880000000, 32 << 20, MEM64 | PREF), None, (0xDC000000, 16 << 20, MEM)])
    vrp = vmd + "/pci10000:e0/10000:e0:06.0"
    t.device(vrp, 0x060400, 0x8086, 0x464D)
    t.device(vrp + "/10000:e1:00.0", 0x010802, 0x144D, 0xA80A,
             bars=[(0xDC000000, 16 << 10, MEM64)])


def acs_switch():
    """A switch whose first downstream port has ACS redirection on; full config spaces (as
    root sees them) give the PCIe port types. Host bridge function is AMD's."""
    t = Tree("acs_switch")
    hb = "pci0000:00"
    t.device(hb + "/0000:00:00.0", 0x060000, 0x1022, 0x1480,
             config=config_space(0x1022, 0x1480, 0x060000))
    rp = hb + "/0000:00:01.1"
    t.device(rp, 0x060400, 0x1022, 0x1483, config=config_space(0x1022, 0x1483, 0x060400, port_type=4))
    usp = rp + "/0000:01:00.0"
    t.device(usp, 0x060400, 0x1000, 0xC010, config=config_space(0x1000, 0xC010, 0x060400, port_type=5))
    d0 = usp + "/0000:02:00.0"
    d1 = usp + "/0000:02:01.0"
    t.device(d0, 0x060400, 0x1000, 0xC010,
             config=config_space(0x1000, 0xC010, 0x060400, port_type=6, acs_ctrl=0x001D))
    t.device(d1, 0x060400, 0x1000, 0xC010,
             config=config_space(0x1000, 0xC010, 0x060400, port_type=6, acs_ctrl=0x0001))
    t.device(d0 + "/0000:03:00.0", 0x030200, 0x10DE, 0x20B0,
             bars=[(0xF0000000, 16 << 20, MEM), (0x20000000000, 1 << 30, MEM64 | PREF)],
             config=config_space(0x10DE, 0x20B0, 0x030200, port_type=0, full=False))
    t.device(d1 + "/0000:04:00.0", 0x010802, 0x144D, 0xA824,
             bars=[(0xF1000000, 16 << 10, MEM64), None, (0x20040000000, 256 << 20, MEM64 | PREF)],
             config=config_space(0x144D, 0xA824, 0x010802, port_type=0))


def broken():
    ok_bars = [(0xE0000000, 1 << 20, MEM)]
    t = Tree("broken_missing_resource")
    t.device("pci0000:00/0000:00:02.0", 0x030000, bars=ok_bars)
    d = t.device("pci0000:00/0000:00:03.0", 0x030000, bars=ok_bars)
    os.remove(os.path.join(d, "resource"))

    t = Tree("broken_garbage_resource")
    t.device("pci0000:00/0000:00:02.0", 0x030000,
             resource="0x00000000e0000000 0x00000000e00fffff 0x0000000000040200\nhello world\n")

    t = Tree("broken_start_gt_end")
    t.device("pci0000:00/0000:00:02.0", 0x030000,
             resource="0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
                      "0x00000000e0100000 0x00000000e00fffff 0x0000000000040200\n")

    t = Tree("broken_class")
    t.device("pci0000:00/0000:00:02.0", 0x030000, bars=ok_bars, classtext="VGA\n")

    t = Tree("broken_orphan")  # parent bridge missing from bus/pci/devices
    t.device("pci0000:00/0000:00:01.0", 0x060400, link=False, files=False)
    t.device("pci0000:00/0000:00:01.0/0000:01:00.0", 0x030000, bars=ok_bars)

    t = Tree("broken_endpoint_parent")  # a device below a function that is not a bridge
    t.device("pci0000:00/0000:00:01.0", 0x030000)
    t.device("pci0000:00/0000:00:01.0/0000:01:00.0", 0x030000, bars=ok_bars)

    t = Tree("broken_overlap")  # two functions claiming the same memory
    t.device("pci0000:00/0000:00:02.0", 0x030000, bars=[(0xE0000000, 1 << 20, MEM)])
    t.device("pci0000:00/0000:00:03.0", 0x010802, bars=[(0xE0080000, 1 << 20, MEM)])

    t = Tree("broken_dangling_link")
    os.symlink("../../../devices/pci0000:00/0000:00:09.0",
               os.path.join(t.root, "bus/pci/devices/0000:00:09.0"))

    t = Tree("broken_name")
    t.device("pci0000:00/0000:00:02.0", 0x030000, bars=ok_bars)
    os.symlink("../../../devices/pci0000:00/0000:00:02.0",
               os.path.join(t.root, "bus/pci/devices/not-a-device"))

    t = Tree("empty")
    with open(os.path.join(t.root, "bus/pci/devices/.keep"), "w") as f:
        f.write("")


if __name__ == "__main__":
    workstation()
    acs_switch()
    broken()
