// The two functions of liblz4's API that Verilator's FST writer (fstcpp) calls, for the
// harness's waveform builds: lz4_literals.cpp implements them (see there), so a machine needs
// neither liblz4's development header nor its library.
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char *src, char *dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
