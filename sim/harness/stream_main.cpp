// The compiled harness of a stream design (the spatial network, a block, a unit): the Verilated
// design behind input registers (sim.harness.input_wrapper), its input streams each fed from a
// file of beats with its own seeded random gaps, the output stream `o` taken with seeded random
// backpressure, and the design's taps (`t<n>` with `data` and `fire`) recorded. No VPI, no
// cocotb.
//
//   stream_harness --in [NAME=]IN.bin ... --out OUT.bin --expect N [--taps DIR]
//                  [--in-pause P] [--out-pause P] [--seed S] [--budget CYCLES]
//                  [--report FILE.json] [--waves FILE.fst] [--waves-from C] [--waves-to C]
//                  [--idle CYCLES] [--quiet]
//
// Each input stream NAME (the design's ports NAME__valid/ready/payload; `--in FILE` alone names
// a design's only input) gets its beats from its file, its payload bytes each (little-endian);
// an input given no file stays idle. OUT.bin gets
// one record per output beat: the cycle it was taken (8 bytes) and OUT_BYTES of payload; with
// --taps, DIR/t<n>.bin gets a record per beat of tap n the same way. The run ends when N output
// beats have been taken (or after --budget cycles). The report: cycles, the cycle of the first
// input and of the last output beat, beats in and out, seconds. Exit 0 when N beats came, 1
// when the budget ran out, 2 on bad arguments or files. --idle adds cycles between the reset
// and the first input beat offered (default 0).
//
// Inputs, widths and taps come from harness_config.h, written by sim.harness.
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

#include "axi_slave.h"  // harness::Pauses
#include "files.h"       // harness::read_file, write_file

namespace {

[[noreturn]] void usage(const std::string &text) {
    std::fprintf(stderr, "stream_harness: error: %s\n", text.c_str());
    std::exit(2);
}

uint64_t number(const char *flag, const char *text) {
    char *end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 0);
    if (errno || !*text || *end || text[0] == '-')
        usage(std::string(flag) + " takes a whole number, not '" + text + "'");
    return v;
}

double chance(const char *flag, const char *text) {
    char *end = nullptr;
    double v = std::strtod(text, &end);
    if (*end || !*text || !(v >= 0.0 && v < 1.0))
        usage(std::string(flag) + " takes 0 <= P < 1, not '" + text + "'");
    return v;
}

// Payload bytes <-> a Verilated port of any width.
template <typename T> void set_bits(T &port, const uint8_t *bytes, size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, bytes, n < sizeof v ? n : sizeof v);
    port = T(v);
}
template <std::size_t W> void set_bits(VlWide<W> &port, const uint8_t *bytes, size_t n) {
    for (std::size_t i = 0; i < W; ++i) {
        uint32_t word = 0;
        if (4 * i < n) std::memcpy(&word, bytes + 4 * i, n - 4 * i < 4 ? n - 4 * i : 4);
        port[i] = word;
    }
}
template <typename T> void get_bits(const T &port, uint8_t *bytes, size_t n) {
    uint64_t v = port;
    std::memcpy(bytes, &v, n < sizeof v ? n : sizeof v);
}
template <std::size_t W> void get_bits(const VlWide<W> &port, uint8_t *bytes, size_t n) {
    for (std::size_t i = 0; i < W && 4 * i < n; ++i) {
        uint32_t word = port[i];
        std::memcpy(bytes + 4 * i, &word, n - 4 * i < 4 ? n - 4 * i : 4);
    }
}

// One input stream: its beats, how many were taken, what it offers in the current cycle.
struct Source {
    std::string name;
    std::size_t bytes;
    std::vector<uint8_t> data;
    uint64_t beats = 0, sent = 0;
    bool cur_valid = false, next_valid = false;
    harness::Pauses pause;
    Source(const char *n, std::size_t b, double p, uint64_t seed)
        : name(n), bytes(b), pause(p, seed) {}
};

struct Recorder {
    std::vector<uint8_t> data;
    uint64_t beats = 0;
    void add(uint64_t cycle, const uint8_t *payload, size_t n) {
        const uint8_t *c = reinterpret_cast<const uint8_t *>(&cycle);
        data.insert(data.end(), c, c + 8);
        data.insert(data.end(), payload, payload + n);
        ++beats;
    }
};


}  // namespace

int main(int argc, char **argv) {
    Verilated::commandArgs(1, argv);
    std::vector<std::string> in_args;
    std::string out_path, taps_dir, report_path, waves;
    uint64_t expect = 0, seed = 1, budget = 1000000000ull, waves_from = 0, waves_to = UINT64_MAX;
    uint64_t idle = 0;
    double in_pause = 0.0, out_pause = 0.0;
    bool quiet = false, have_expect = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "--in") in_args.push_back(value());
        else if (a == "--out") out_path = value();
        else if (a == "--taps") taps_dir = value();
        else if (a == "--report") report_path = value();
        else if (a == "--waves") waves = value();
        else if (a == "--expect") expect = number("--expect", value()), have_expect = true;
        else if (a == "--seed") seed = number("--seed", value());
        else if (a == "--budget") budget = number("--budget", value());
        else if (a == "--waves-from") waves_from = number("--waves-from", value());
        else if (a == "--waves-to") waves_to = number("--waves-to", value());
        else if (a == "--idle") idle = number("--idle", value());
        else if (a == "--in-pause") in_pause = chance("--in-pause", value());
        else if (a == "--out-pause") out_pause = chance("--out-pause", value());
        else if (a == "--quiet") quiet = true;
        else usage("unknown argument '" + a + "'");
    }
    if (in_args.empty() || out_path.empty() || !have_expect)
        usage("give --in IN.bin, --out OUT.bin and --expect N");
#if !VM_TRACE
    if (!waves.empty()) usage("this build has no waveform support (build it with waves)");
#endif
    // the first input's gaps are seeded as when the harness had one input (seed + 200)
    uint64_t source_seed = seed + 200;
#define DECLARE_SOURCE(n, b) \
    Source src_##n(#n, b, in_pause, source_seed); \
    source_seed = source_seed == seed + 200 ? seed + 300 : source_seed + 1;
    FOR_INPUTS(DECLARE_SOURCE)
    std::vector<Source *> sources;
#define LIST_SOURCE(n, b) sources.push_back(&src_##n);
    FOR_INPUTS(LIST_SOURCE)
    for (const std::string &arg : in_args) {
        std::size_t eq = arg.find('=');
        Source *src = nullptr;
        std::string path = arg;
        if (eq != std::string::npos) {
            for (Source *s : sources)
                if (s->name == arg.substr(0, eq)) src = s;
            if (!src) usage("--in " + arg + ": the design has no input stream '" +
                            arg.substr(0, eq) + "'");
            path = arg.substr(eq + 1);
        } else if (sources.size() == 1) {
            src = sources[0];
        } else {
            usage("--in " + arg + ": the design has several input streams; give NAME=FILE");
        }
        if (!harness::read_file(path, src->data)) usage("cannot read " + path);
        if (src->data.size() % src->bytes)
            usage(path + " holds " + std::to_string(src->data.size()) +
                  " bytes, not a whole number of " + std::to_string(src->bytes) +
                  "-byte beats");
        src->beats = src->data.size() / src->bytes;
    }

    std::unique_ptr<Vtop> top(new Vtop);
#if VM_TRACE
    std::unique_ptr<VerilatedFstC> trace;
    if (!waves.empty()) {
        Verilated::traceEverOn(true);
        trace.reset(new VerilatedFstC);
        top->trace(trace.get(), 99);
        trace->open(waves.c_str());
    }
#endif
    uint64_t cycle = 0;
    auto dump = [&]() {
#if VM_TRACE
        if (trace && cycle >= waves_from && cycle <= waves_to)
            trace->dump(10 * cycle + (top->clk ? 0 : 5));
#endif
    };
    harness::Pauses sink_pause(out_pause, seed + 201);
    Recorder out;
#define DECLARE_TAP(n, bytes) Recorder tap##n;
    FOR_TAPS(DECLARE_TAP)
    // what the wrapper presents in the current cycle
    bool cur_ready = false;
    uint64_t first_in = UINT64_MAX, last_out = 0;
    auto edge = [&]() {
        top->clk = 1;
        top->eval();
        ++cycle;
        dump();
        top->clk = 0;
        top->eval();
        dump();
    };
    // reset: four cycles with rst high, then one without
    top->rst = 1;
#define IDLE_SOURCE(n, b) top->n##_valid = 0;
    FOR_INPUTS(IDLE_SOURCE)
    top->o_ready = 0;
    for (int k = 0; k < 4; ++k) edge();
    top->rst = 0;
    edge();  // the wrapper's rst register falls: the design's first cycle out of reset is next
    for (uint64_t k = 0; k < idle; ++k) edge();
    auto t0 = std::chrono::steady_clock::now();
    const char *ended = "expected beats";
    uint8_t payload[OUT_BYTES > 0 ? OUT_BYTES : 1];
    while (out.beats < expect) {
        if (cycle > budget) {
            ended = "budget";
            break;
        }
        // this cycle's handshakes
#define TAKE_SOURCE(n, b)                                     \
        if (src_##n.cur_valid && top->n##_ready) {            \
            if (first_in == UINT64_MAX) first_in = cycle;     \
            ++src_##n.sent;                                   \
        }
        FOR_INPUTS(TAKE_SOURCE)
        if (cur_ready && top->o_valid) {
            get_bits(top->o_payload, payload, OUT_BYTES);
            out.add(cycle, payload, OUT_BYTES);
            last_out = cycle;
        }
#define RECORD_TAP(n, bytes)                                  \
        if (top->t##n##_fire) {                               \
            uint8_t b[bytes];                                 \
            get_bits(top->t##n##_data, b, bytes);             \
            tap##n.add(cycle, b, bytes);                      \
        }
        FOR_TAPS(RECORD_TAP)
        // the next cycle's inputs
#define DRIVE_SOURCE(n, b)                                                    \
        src_##n.next_valid = src_##n.sent < src_##n.beats && !src_##n.pause.pause(); \
        top->n##_valid = src_##n.next_valid;                                  \
        if (src_##n.next_valid) set_bits(top->n##_payload, &src_##n.data[src_##n.sent * b], b);
        FOR_INPUTS(DRIVE_SOURCE)
        bool ready = !sink_pause.pause();
        top->o_ready = ready;
        edge();
        for (Source *s : sources) s->cur_valid = s->next_valid;
        cur_ready = ready;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#if VM_TRACE
    if (trace) trace->close();
#endif
    top->final();
    if (!harness::write_file(out_path, out.data)) usage("cannot write " + out_path);
#define WRITE_TAP(n, bytes)                                                   \
    if (!taps_dir.empty() && !harness::write_file(taps_dir + "/t" #n ".bin", tap##n.data)) \
        usage("cannot write " + taps_dir + "/t" #n ".bin");
    FOR_TAPS(WRITE_TAP)
    uint64_t sent_total = 0;
    for (Source *s : sources) sent_total += s->sent;
    char text[512];
    std::snprintf(text, sizeof text,
                  "{\"ended\": \"%s\", \"cycles\": %llu, \"first_in\": %lld, \"last_out\": %llu, "
                  "\"beats_in\": %llu, \"beats_out\": %llu, \"seconds\": %.6f}\n",
                  ended, (unsigned long long)cycle,
                  first_in == UINT64_MAX ? -1LL : (long long)first_in,
                  (unsigned long long)last_out, (unsigned long long)sent_total,
                  (unsigned long long)out.beats, seconds);
    if (!report_path.empty()) {
        std::vector<uint8_t> bytes(text, text + std::strlen(text));
        if (!harness::write_file(report_path, bytes)) usage("cannot write " + report_path);
    } else {
        std::fputs(text, stdout);
    }
    if (!quiet)
        std::fprintf(stderr, "stream_harness: %s after %llu cycles, %.2f s (%.0f cycles/s)\n",
                     ended, (unsigned long long)cycle, seconds, cycle / seconds);
    return std::strcmp(ended, "budget") == 0 ? 1 : 0;
}
