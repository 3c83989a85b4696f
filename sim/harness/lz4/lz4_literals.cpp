// LZ4 "compression" that stores its input as one run of literals: a valid LZ4 block (a token
// whose high nibble is the literal count, 15 and more in extra bytes of 255 and a remainder,
// then the bytes, and no match), which every LZ4 decoder reads. Verilator's FST writer keeps
// the smaller of a block and its raw bytes, so value changes are stored raw and only the
// hierarchy goes through this; FST readers (GTKWave, Surfer, pywellen) open the files as usual.
#include <cstring>

#include "lz4.h"

extern "C" int LZ4_compressBound(int n) { return n < 0 ? 0 : n + n / 255 + 16; }

extern "C" int LZ4_compress_default(const char *src, char *dst, int n, int capacity) {
    if (n < 0) return 0;
    int need = 1 + (n >= 15 ? (n - 15) / 255 + 1 : 0) + n;
    if (need > capacity) return 0;
    char *out = dst;
    if (n < 15) {
        *out++ = char(n << 4);
    } else {
        *out++ = char(0xF0);
        int rest = n - 15;
        for (; rest >= 255; rest -= 255) *out++ = char(0xFF);
        *out++ = char(rest);
    }
    std::memcpy(out, src, size_t(n));
    return int(out + n - dst);
}
