// An AXI4 memory for the compiled harness: INCR bursts of full beats from a byte array, with
// seeded random pauses on all five channels (AW, W, B, AR, R), independent read and write
// sides, and responses in order per side. It is a Moore model: what it drives in a cycle depends
// only on its state, and handshakes are taken from the values both sides settle on before the
// clock edge.
//
// What the core does wrong on the bus is reported, not tolerated: a burst that is not INCR, a
// beat size other than the bus width, a burst that crosses 4 KiB, `wlast` on the wrong beat.
// An address outside the memory gets DECERR (as an interconnect would) and is counted.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace harness {

// A channel's pause source: each cycle the channel pauses with probability `chance`.
class Pauses {
  public:
    Pauses(double chance, uint64_t seed) : threshold_(to_threshold(chance)), rng_(seed) {}
    bool pause() { return threshold_ != 0 && rng_() < threshold_; }

  private:
    static uint64_t to_threshold(double chance) {
        if (chance <= 0.0) return 0;
        if (chance >= 1.0) return UINT64_MAX;
        return static_cast<uint64_t>(chance * 18446744073709551616.0);
    }
    uint64_t threshold_;
    std::mt19937_64 rng_;
};

struct Burst {
    uint64_t addr;
    unsigned len;    // beats - 1
    unsigned id;
    unsigned beat;   // beats done
    bool bad;        // outside the memory: every beat answers DECERR
};

// Protocol faults the core made; the harness stops at the first one.
struct Fault {
    bool any = false;
    std::string what;
    void set(const std::string &text) {
        if (!any) {
            any = true;
            what = text;
        }
    }
};

class AxiMemory {
  public:
    AxiMemory(unsigned beat_bytes, double pause, uint64_t seed, unsigned depth = 8)
        : beat_bytes_(beat_bytes), depth_(depth), p_aw_(pause, seed + 100), p_w_(pause, seed + 101),
          p_b_(pause, seed + 102), p_ar_(pause, seed + 103), p_r_(pause, seed + 104) {}

    std::vector<uint8_t> mem;
    Fault fault;
    uint64_t decerr = 0;       // bursts answered with DECERR
    uint64_t read_beats = 0;
    uint64_t write_beats = 0;

    // -- what the memory drives this cycle (call once per cycle, before the settle) --------
    struct Drive {
        bool arready, awready, wready, rvalid, rlast, bvalid;
        unsigned rid, bid, rresp, bresp;
        const uint8_t *rdata;  // beat_bytes bytes
    };

    Drive drive() {
        Drive d{};
        d.arready = ar_.size() < depth_ && !p_ar_.pause();
        d.awready = aw_.size() < depth_ && !p_aw_.pause();
        d.wready = !aw_.empty() && !p_w_.pause();
        d.rvalid = !ar_.empty() && !p_r_.pause();
        if (d.rvalid) {
            const Burst &b = ar_.front();
            d.rlast = b.beat == b.len;
            d.rid = b.id;
            d.rresp = b.bad ? 3 : 0;
            if (b.bad) {
                zero_.assign(beat_bytes_, 0);
                d.rdata = zero_.data();
            } else {
                d.rdata = &mem[b.addr + uint64_t(b.beat) * beat_bytes_];
            }
        }
        d.bvalid = !b_.empty() && !p_b_.pause();
        if (d.bvalid) {
            d.bid = b_.front().id;
            d.bresp = b_.front().bad ? 3 : 0;
        }
        return d;
    }

    // -- the handshakes of this cycle (after the clock edge) --------------------------------
    void take_ar(uint64_t addr, unsigned len, unsigned size, unsigned burst, unsigned id) {
        ar_.push_back(check("read", addr, len, size, burst, id));
    }
    // (the queues are empty only when reset_channels dropped the burst a handshake of the
    // wrapper's registered inputs still names: nothing to take)
    void take_r() {
        if (ar_.empty()) return;
        Burst &b = ar_.front();
        ++read_beats;
        if (++b.beat > b.len) ar_.pop_front();
    }
    void take_aw(uint64_t addr, unsigned len, unsigned size, unsigned burst, unsigned id) {
        aw_.push_back(check("write", addr, len, size, burst, id));
    }
    // `data` and `strb` are the beat's bytes and byte enables.
    void take_w(const uint8_t *data, uint64_t strb, bool last) {
        if (aw_.empty()) return;
        Burst &b = aw_.front();
        bool expect_last = b.beat == b.len;
        if (last != expect_last) {
            char text[160];
            std::snprintf(text, sizeof text,
                          "write burst at %#llx: wlast is %d on beat %u of %u",
                          (unsigned long long)b.addr, int(last), b.beat + 1, b.len + 1);
            fault.set(text);
        }
        if (!b.bad) {
            uint8_t *dst = &mem[b.addr + uint64_t(b.beat) * beat_bytes_];
            for (unsigned i = 0; i < beat_bytes_; ++i)
                if (strb >> i & 1) dst[i] = data[i];
        }
        ++write_beats;
        if (++b.beat > b.len) {
            b_.push_back(b);
            aw_.pop_front();
        }
    }
    void take_b() {
        if (!b_.empty()) b_.pop_front();
    }

    bool idle() const { return ar_.empty() && aw_.empty() && b_.empty(); }

    // A system reset: the bursts in flight are forgotten with the master that issued them.
    void reset_channels() {
        ar_.clear();
        aw_.clear();
        b_.clear();
    }

  private:
    Burst check(const char *side, uint64_t addr, unsigned len, unsigned size, unsigned burst,
                unsigned id) {
        char text[200];
        uint64_t bytes = uint64_t(len + 1) * beat_bytes_;
        if (burst != 1) {
            std::snprintf(text, sizeof text, "%s burst at %#llx is not INCR (burst type %u)",
                          side, (unsigned long long)addr, burst);
            fault.set(text);
        }
        if ((1u << size) != beat_bytes_) {
            std::snprintf(text, sizeof text,
                          "%s burst at %#llx has beats of %u bytes; the bus has %u", side,
                          (unsigned long long)addr, 1u << size, beat_bytes_);
            fault.set(text);
        }
        if (addr % beat_bytes_) {
            std::snprintf(text, sizeof text, "%s burst at %#llx is not aligned to a beat",
                          side, (unsigned long long)addr);
            fault.set(text);
        }
        if ((addr >> 12) != ((addr + bytes - 1) >> 12)) {
            std::snprintf(text, sizeof text,
                          "%s burst at %#llx of %llu bytes crosses a 4 KiB boundary", side,
                          (unsigned long long)addr, (unsigned long long)bytes);
            fault.set(text);
        }
        bool bad = addr + bytes > mem.size() || addr % beat_bytes_;
        if (bad) ++decerr;
        return Burst{addr, len, id, 0, bad};
    }

    unsigned beat_bytes_, depth_;
    Pauses p_aw_, p_w_, p_b_, p_ar_, p_r_;
    std::deque<Burst> ar_, aw_, b_;
    std::vector<uint8_t> zero_;
};

}  // namespace harness
