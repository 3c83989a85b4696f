// Checks of the harness's AXI4 memory model (axi_slave.h) without a design: each case feeds it
// one burst, good or broken, and prints what it reported. tests/test_sim_harness.py compiles
// this with the C++ compiler and compares the lines with what each case must give.
#include <cstdio>
#include <cstring>

#include "axi_slave.h"

using harness::AxiMemory;

static void report(const char *name, const AxiMemory &m) {
    std::printf("%s: fault=%d decerr=%llu%s%s\n", name, int(m.fault.any),
                (unsigned long long)m.decerr, m.fault.any ? " what=" : "", m.fault.what.c_str());
}

static AxiMemory fresh() {
    AxiMemory m(8, 0.0, 1);
    m.mem.assign(16384, 0);
    for (size_t i = 0; i < m.mem.size(); ++i) m.mem[i] = uint8_t(i * 7);
    return m;
}

int main() {
    {   // a good read: 4 beats from 0x100, in order, rlast on the fourth
        AxiMemory m = fresh();
        m.take_ar(0x100, 3, 3, 1, 5);
        bool ok = true;
        for (unsigned beat = 0; beat < 4; ++beat) {
            AxiMemory::Drive d = m.drive();
            ok &= d.rvalid && d.rid == 5 && d.rresp == 0 && d.rlast == (beat == 3) &&
                  std::memcmp(d.rdata, &m.mem[0x100 + 8 * beat], 8) == 0;
            m.take_r();
        }
        ok &= !m.drive().rvalid && m.idle();
        std::printf("read: ok=%d\n", int(ok));
        report("read", m);
    }
    {   // a good write of 2 beats with byte enables, then its response
        AxiMemory m = fresh();
        m.take_aw(0x200, 1, 3, 1, 2);
        uint8_t beat[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        m.take_w(beat, 0x0F, false);
        m.take_w(beat, 0xF0, true);
        AxiMemory::Drive d = m.drive();
        bool ok = d.bvalid && d.bid == 2 && d.bresp == 0 && m.mem[0x200] == 1 &&
                  m.mem[0x204] == uint8_t(0x204 * 7) && m.mem[0x20C] == 5;
        m.take_b();
        std::printf("write: ok=%d\n", int(ok && m.idle()));
        report("write", m);
    }
    {   AxiMemory m = fresh();
        m.take_ar(0x100, 0, 3, 2, 0);        // WRAP
        report("wrap", m);
    }
    {   AxiMemory m = fresh();
        m.take_ar(0x100, 0, 2, 1, 0);        // 4-byte beats on an 8-byte bus
        report("size", m);
    }
    {   AxiMemory m = fresh();
        m.take_ar(0xFF8, 1, 3, 1, 0);        // two beats across 0x1000
        report("cross4k", m);
    }
    {   AxiMemory m = fresh();
        m.take_aw(0x100, 1, 3, 1, 0);
        uint8_t beat[8] = {};
        m.take_w(beat, 0xFF, true);          // wlast on the first of two beats
        report("wlast", m);
    }
    {   AxiMemory m = fresh();
        m.mem.resize(10000);
        m.take_ar(10000 - 8, 1, 3, 1, 0);    // the second beat is past the memory
        AxiMemory::Drive d = m.drive();
        std::printf("outside: rresp=%u\n", d.rresp);
        report("outside", m);
    }
    {   // pauses: none at chance 0, all at chance 1, about half at 0.5
        harness::Pauses none(0.0, 3), all(1.0, 3), half(0.5, 3);
        int n0 = 0, n1 = 0, nh = 0;
        for (int i = 0; i < 10000; ++i) n0 += none.pause(), n1 += all.pause(), nh += half.pause();
        std::printf("pauses: %d %d %d\n", n0, n1, nh);
    }
    return 0;
}
