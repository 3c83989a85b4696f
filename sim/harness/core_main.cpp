// The overlay core's compiled harness: the Verilated core, an AXI4 memory (axi_slave.h) holding
// a memory image, and an AXI4-Lite host that runs the program the way a driver would. No VPI,
// no cocotb: one C++ loop.
//
//   core_harness --run IN.bin OUT.bin [--run ...] --layers N [--budget CYCLES] [--seed S]
//                [--pause P] [--report FILE.json] [--waves FILE.fst] [--waves-from C]
//                [--waves-to C] [--progress CYCLES] [--quiet] [--interrupt CYCLE hard|soft]
//
// Each `--run` loads IN.bin as the whole memory (the program at address 0, as gen.program lays
// it out, and the image's pixels), writes PROGRAM = 0 and CONTROL = start | irq_enable, waits
// for the irq, reads the status, the counters and every layer's cycles, and writes the memory
// to OUT.bin. Runs follow each other without a reset (images back to back). The report is JSON:
// one object per run. Exit status: 0 when every run ends done, 1 when a run ends in error, on
// a bus fault or past its budget (the report says which), 2 on bad arguments.
//
// `--interrupt CYCLE hard|soft` before a `--run` interrupts that run CYCLE cycles after its
// start (a reset of the core and the bus's bursts, or CONTROL.soft_reset and a wait until the
// core is idle and the bus quiet; an "ended": "hang" entry if that takes a million cycles),
// then runs it again from IN.bin; its report gains "interrupt": {kind, at, finished_before,
// recovery_cycles, recovered}.
//
// On standard error: a line per run ("core_harness: run N: ..."), unless --quiet, and with
// --progress a line "core_harness: progress N CYCLES" every CYCLES cycles of a run.
//
// Register offsets and the bus width come from harness_config.h, written by sim.harness from
// spec.csr and the core's configuration.
#include "Vtop.h"
#include "harness_config.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_fst_c.h"
#endif

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "axi_slave.h"
#include "files.h"

#define M(sig) top->m_axi_##sig
#define S(sig) top->s_axil_##sig

namespace {

// An interruption of a run: at `at` cycles after its start, a hard reset (`kind` 0: the
// reset input, the memory's channels emptied with it, as a system reset does) or a soft reset
// (1: CONTROL.soft_reset, then waiting for the core to be idle and the bus quiet); the run then
// starts again from its input file. `kind` -1: none.
struct Interrupt {
    uint64_t at = 0;
    int kind = -1;
};

struct Options {
    std::vector<std::pair<std::string, std::string>> runs;
    std::vector<Interrupt> interrupts;     // one per run
    Interrupt next;                        // for the next --run
    unsigned layers = 0;
    uint64_t budget = 500000000ull;
    uint64_t seed = 1;
    double pause = 0.0;
    std::string report, waves;
    uint64_t waves_from = 0, waves_to = UINT64_MAX;
    uint64_t progress = 0;
    bool quiet = false;
};

[[noreturn]] void usage(const char *text) {
    std::fprintf(stderr, "core_harness: error: %s\n", text);
    std::exit(2);
}

uint64_t number(const char *flag, const char *text) {
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 0);
    if (errno || !*text || *end || text[0] == '-') {
        std::string m = std::string(flag) + " takes a whole number, not '" + text + "'";
        usage(m.c_str());
    }
    return v;
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto need = [&](int n) {
            if (i + n >= argc) usage((a + " needs " + std::to_string(n) + " value(s)").c_str());
        };
        if (a == "--run") {
            need(2);
            o.runs.emplace_back(argv[i + 1], argv[i + 2]);
            o.interrupts.push_back(o.next);
            o.next = Interrupt{};
            i += 2;
        } else if (a == "--interrupt") {
            need(2);
            o.next.at = number("--interrupt", argv[i + 1]);
            std::string kind = argv[i + 2];
            if (kind != "hard" && kind != "soft")
                usage(("--interrupt takes CYCLE hard|soft, not '" + kind + "'").c_str());
            o.next.kind = kind == "hard" ? 0 : 1;
            i += 2;
        } else if (a == "--layers") {
            need(1);
            o.layers = unsigned(number("--layers", argv[++i]));
        } else if (a == "--budget") {
            need(1);
            o.budget = number("--budget", argv[++i]);
        } else if (a == "--seed") {
            need(1);
            o.seed = number("--seed", argv[++i]);
        } else if (a == "--pause") {
            need(1);
            char *end = nullptr;
            o.pause = std::strtod(argv[++i], &end);
            if (*end || !(o.pause >= 0.0 && o.pause < 1.0)) usage("--pause takes 0 <= P < 1");
        } else if (a == "--report") {
            need(1);
            o.report = argv[++i];
        } else if (a == "--waves") {
            need(1);
            o.waves = argv[++i];
        } else if (a == "--waves-from") {
            need(1);
            o.waves_from = number("--waves-from", argv[++i]);
        } else if (a == "--waves-to") {
            need(1);
            o.waves_to = number("--waves-to", argv[++i]);
        } else if (a == "--progress") {
            need(1);
            o.progress = number("--progress", argv[++i]);
        } else if (a == "--quiet") {
            o.quiet = true;
        } else {
            usage(("unknown argument '" + a + "'").c_str());
        }
    }
    if (o.runs.empty()) usage("give at least one --run IN.bin OUT.bin");
    if (o.next.kind >= 0) usage("--interrupt applies to the --run after it; none follows");
#if !VM_TRACE
    if (!o.waves.empty()) usage("this build has no waveform support (build it with waves)");
#endif
    return o;
}

// What the wrapper presents to the core in a cycle (the handshake halves the harness needs).
struct Inputs {
    bool arready, awready, wready, rvalid, bvalid, s_awvalid, s_wvalid, s_bready, s_arvalid,
        s_rready;
};

struct Lite {
    // one AXI4-Lite transaction at a time
    enum Kind { NONE, WRITE, READ } kind = NONE;
    uint32_t addr = 0, data = 0;
    bool aw_done = false, w_done = false, done = false;
};

class Bench {
  public:
    Bench(const Options &o)
        : opt_(o), top_(new Vtop), mem_(BEAT_BYTES, o.pause, o.seed) {
#if VM_TRACE
        if (!o.waves.empty()) {
            Verilated::traceEverOn(true);
            trace_.reset(new VerilatedFstC);
            top_->trace(trace_.get(), 99);
            trace_->open(o.waves.c_str());
        }
#endif
    }
    ~Bench() {
#if VM_TRACE
        if (trace_) trace_->close();
#endif
        top_->final();
    }

    uint64_t cycle() const { return cycle_; }

    // `drop_bus`: a system reset, the memory's bursts in flight dropped before every reset
    // cycle (what the core issued in the cycle the reset arrived included), so the core
    // leaves reset on a quiet bus.
    void reset(bool drop_bus = false) {
        Vtop *top = top_.get();
        top->rst = 1;
        for (int i = 0; i < 4; ++i) {
            if (drop_bus) mem_.reset_channels();
            tick();
        }
        if (drop_bus) mem_.reset_channels();
        top->rst = 0;
        tick();
    }

    // One clock cycle. The core's inputs reach it through registers in the wrapper
    // (sim.harness.input_wrapper), so what the memory and the host drive in cycle n is set
    // before the edge that opens it: the model is Moore (its values depend on its state only),
    // so the core sees the same signals as with direct inputs, and no logic of the core is
    // evaluated between edges. On entry the core's outputs are settled for cycle n and `cur_`
    // holds the inputs it sees in cycle n.
    void tick() {
        Vtop *top = top_.get();
        // this cycle's handshakes, from the core's outputs and what the wrapper presents
        const Inputs &d = cur_;
        bool ar = M(arvalid) && d.arready, aw = M(awvalid) && d.awready;
        bool w = M(wvalid) && d.wready, r = d.rvalid && M(rready), b = d.bvalid && M(bready);
        if (ar) mem_.take_ar(M(araddr), M(arlen), M(arsize), M(arburst), M(arid));
        if (r) mem_.take_r();
        if (aw) mem_.take_aw(M(awaddr), M(awlen), M(awsize), M(awburst), M(awid));
        if (w) {
            uint8_t wdata[BEAT_BYTES];
            get_wdata(wdata);
            mem_.take_w(wdata, M(wstrb), M(wlast));
        }
        if (b) mem_.take_b();
        if (lite_.kind == Lite::WRITE) {
            lite_.aw_done |= d.s_awvalid && S(awready);
            lite_.w_done |= d.s_wvalid && S(wready);
            if (d.s_bready && S(bvalid)) lite_.done = true, lite_.kind = Lite::NONE;
        } else if (lite_.kind == Lite::READ) {
            lite_.aw_done |= d.s_arvalid && S(arready);
            if (d.s_rready && S(rvalid)) lite_.done = true, lite_.data = S(rdata), lite_.kind = Lite::NONE;
        }
        // the next cycle's inputs
        Inputs n{};
        harness::AxiMemory::Drive md = mem_.drive();
        n.arready = md.arready;
        n.awready = md.awready;
        n.wready = md.wready;
        n.rvalid = md.rvalid;
        n.bvalid = md.bvalid;
        n.s_awvalid = lite_.kind == Lite::WRITE && !lite_.aw_done;
        n.s_wvalid = lite_.kind == Lite::WRITE && !lite_.w_done;
        n.s_arvalid = lite_.kind == Lite::READ && !lite_.aw_done;
        n.s_bready = lite_.kind == Lite::WRITE;
        n.s_rready = lite_.kind == Lite::READ;
        M(arready) = md.arready;
        M(awready) = md.awready;
        M(wready) = md.wready;
        M(rvalid) = md.rvalid;
        M(rlast) = md.rvalid && md.rlast;
        M(rid) = md.rid;
        M(rresp) = md.rresp;
        if (md.rvalid) set_rdata(md.rdata);
        M(bvalid) = md.bvalid;
        M(bid) = md.bid;
        M(bresp) = md.bresp;
        S(awvalid) = n.s_awvalid;
        S(awaddr) = lite_.addr;
        S(awprot) = 0;
        S(wvalid) = n.s_wvalid;
        S(wdata) = lite_.data;
        S(wstrb) = 0xF;
        S(bready) = n.s_bready;
        S(arvalid) = n.s_arvalid;
        S(araddr) = lite_.addr;
        S(arprot) = 0;
        S(rready) = n.s_rready;
        top->clk = 1;
        top->eval();
        ++cycle_;
        dump();
        top->clk = 0;
        top->eval();
        dump();
        cur_ = n;
    }

    void write(uint32_t addr, uint32_t data) {
        lite_ = Lite{Lite::WRITE, addr, data};
        while (!lite_.done) tick();
    }
    uint32_t read(uint32_t addr) {
        lite_ = Lite{Lite::READ, addr, 0};
        while (!lite_.done) tick();
        return lite_.data;
    }
    uint64_t read64(uint32_t lo) { return read(lo) | uint64_t(read(lo + 4)) << 32; }
    bool irq() const { return top_->irq; }
    harness::AxiMemory &mem() { return mem_; }

  private:
    void set_rdata(const uint8_t *bytes) {
        Vtop *top = top_.get();
#if BEAT_BYTES <= 8
        uint64_t v = 0;
        std::memcpy(&v, bytes, BEAT_BYTES);
        M(rdata) = v;
#else
        for (unsigned i = 0; i < BEAT_BYTES / 4; ++i) std::memcpy(&M(rdata)[i], bytes + 4 * i, 4);
#endif
    }
    void get_wdata(uint8_t *bytes) {
        Vtop *top = top_.get();
#if BEAT_BYTES <= 8
        uint64_t v = M(wdata);
        std::memcpy(bytes, &v, BEAT_BYTES);
#else
        for (unsigned i = 0; i < BEAT_BYTES / 4; ++i) std::memcpy(bytes + 4 * i, &M(wdata)[i], 4);
#endif
    }
    void dump() {
#if VM_TRACE
        if (trace_ && cycle_ >= opt_.waves_from && cycle_ <= opt_.waves_to)
            trace_->dump(10 * cycle_ + (top_->clk ? 0 : 5));
#endif
    }

    const Options &opt_;
    std::unique_ptr<Vtop> top_;
    harness::AxiMemory mem_;
    Lite lite_;
    Inputs cur_{};
    uint64_t cycle_ = 0;
#if VM_TRACE
    std::unique_ptr<VerilatedFstC> trace_;
#endif
};



std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

}  // namespace

int main(int argc, char **argv) {
    Verilated::commandArgs(1, argv);
    Options opt = parse(argc, argv);
    Bench bench(opt);
    bench.reset();
    std::string report = "[";
    int status_code = 0;
    for (size_t n = 0; n < opt.runs.size(); ++n) {
        const auto &run = opt.runs[n];
        if (!harness::read_file(run.first, bench.mem().mem)) {
            std::fprintf(stderr, "core_harness: error: cannot read %s\n", run.first.c_str());
            return 2;
        }
        auto t0 = std::chrono::steady_clock::now();
        std::string interrupted;
        const Interrupt &intr = opt.interrupts[n];
        if (intr.kind >= 0) {
            uint64_t s0 = bench.cycle();
            bench.write(CSR_PROGRAM, 0);
            bench.write(CSR_CONTROL, CONTROL_START | CONTROL_IRQ_ENABLE);
            while (!bench.irq() && !bench.mem().fault.any && bench.cycle() - s0 < intr.at)
                bench.tick();
            uint64_t at = bench.cycle() - s0, r0 = bench.cycle();
            bool finished = bench.irq(), recovered = true;
            if (intr.kind == 0) {
                bench.reset(true);
            } else {
                bench.write(CSR_CONTROL, CONTROL_SOFT_RESET);
                while ((bench.read(CSR_STATUS) & STATUS_BUSY) || !bench.mem().idle()) {
                    if (bench.cycle() - r0 > 1000000) {
                        recovered = false;
                        break;
                    }
                    bench.tick();
                }
                bench.write(CSR_STATUS, STATUS_DONE | STATUS_ERROR);
            }
            char ibuf[256];
            std::snprintf(ibuf, sizeof ibuf,
                          ", \"interrupt\": {\"kind\": \"%s\", \"at\": %llu, \"finished_before\": "
                          "%s, \"recovery_cycles\": %llu, \"recovered\": %s}",
                          intr.kind == 0 ? "hard" : "soft", (unsigned long long)at,
                          finished ? "true" : "false", (unsigned long long)(bench.cycle() - r0),
                          recovered ? "true" : "false");
            interrupted = ibuf;
            if (!recovered) {
                report += std::string(n ? ",\n " : "") + "{\"ended\": \"hang\"" + interrupted + "}";
                status_code = 1;
                break;
            }
            if (!harness::read_file(run.first, bench.mem().mem)) {
                std::fprintf(stderr, "core_harness: error: cannot read %s\n", run.first.c_str());
                return 2;
            }
        }
        uint64_t start = bench.cycle();
        bench.write(CSR_PROGRAM, 0);
        bench.write(CSR_CONTROL, CONTROL_START | CONTROL_IRQ_ENABLE);
        const char *ended = "irq";
        while (!bench.irq()) {
            bench.tick();
            if (bench.mem().fault.any) {
                ended = "bus fault";
                break;
            }
            uint64_t done = bench.cycle() - start;
            if (done > opt.budget) {
                ended = "budget";
                break;
            }
            if (opt.progress && done % opt.progress == 0) {
                std::fprintf(stderr, "core_harness: progress %zu %llu\n", n,
                             (unsigned long long)done);
                std::fflush(stderr);
            }
        }
        uint64_t waited = bench.cycle() - start;
        double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char buf[512];
        std::string entry = "{";
        auto add = [&](const char *key, unsigned long long v) {
            std::snprintf(buf, sizeof buf, "%s\"%s\": %llu", entry.size() > 1 ? ", " : "", key, v);
            entry += buf;
        };
        entry += "\"ended\": " + json_string(ended);
        if (bench.mem().fault.any) entry += ", \"fault\": " + json_string(bench.mem().fault.what);
        add("start", start);
        add("waited", waited);
        std::snprintf(buf, sizeof buf, ", \"seconds\": %.6f", seconds);
        entry += buf;
        bool ok = std::strcmp(ended, "irq") == 0;
        if (ok) {
            uint32_t status = bench.read(CSR_STATUS);
            add("status", status);
            add("error", bench.read(CSR_ERROR));
            add("cycles", bench.read64(CSR_CYCLES_LO));
            add("events", bench.read64(CSR_EVENTS_LO));
            add("read", bench.read64(CSR_READ_LO));
            add("written", bench.read64(CSR_WRITTEN_LO));
            add("decerr", bench.mem().decerr);
            entry += ", \"layer_cycles\": [";
            for (unsigned l = 0; l < opt.layers; ++l) {
                bench.write(CSR_LAYER_SELECT, l);
                std::snprintf(buf, sizeof buf, "%s%u", l ? ", " : "", bench.read(CSR_LAYER_CYCLES));
                entry += buf;
            }
            entry += "]";
            bench.write(CSR_STATUS, STATUS_DONE | STATUS_ERROR);
            if (!(status & STATUS_DONE) || (status & STATUS_ERROR)) status_code = 1;
        } else {
            // where it stopped: the layer running and the cycles of the layers before it
            add("status", bench.read(CSR_STATUS));
            uint32_t layer = bench.read(CSR_LAYER);
            add("layer", layer);
            entry += ", \"layer_cycles\": [";
            for (unsigned l = 0; l < layer && l < opt.layers; ++l) {
                bench.write(CSR_LAYER_SELECT, l);
                std::snprintf(buf, sizeof buf, "%s%u", l ? ", " : "", bench.read(CSR_LAYER_CYCLES));
                entry += buf;
            }
            entry += "]";
            status_code = 1;
        }
        entry += interrupted + "}";
        report += (n ? ",\n " : "") + entry;
        if (!harness::write_file(run.second, bench.mem().mem)) {
            std::fprintf(stderr, "core_harness: error: cannot write %s\n", run.second.c_str());
            return 2;
        }
        if (!opt.quiet) {
            std::fprintf(stderr, "core_harness: run %zu: %s after %llu cycles, %.2f s (%.0f cycles/s)\n",
                         n, ended, (unsigned long long)waited, seconds, waited / seconds);
            std::fflush(stderr);
        }
        if (!ok) break;
    }
    report += "]\n";
    if (!opt.report.empty()) {
        std::vector<uint8_t> bytes(report.begin(), report.end());
        if (!harness::write_file(opt.report, bytes)) {
            std::fprintf(stderr, "core_harness: error: cannot write %s\n", opt.report.c_str());
            return 2;
        }
    } else {
        std::fputs(report.c_str(), stdout);
    }
    return status_code;
}
