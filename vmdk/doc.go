// Package vmdk reads and writes VMware virtual disks (VMDK) as draas sources
// and sinks.
//
// [Open] returns a [Source], a draas.BlockSource and draas.ExtentSource, for
// streamOptimized and monolithicSparse files (a hosted sparse extent with an
// embedded descriptor) and for descriptor files naming flat, sparse or zero
// extents beside them (monolithicFlat, twoGbMaxExtentFlat,
// twoGbMaxExtentSparse, vmfs). Delta disks, raw device mappings and ESX
// vmfsSparse/seSparse extents are rejected with draas.ErrInvalid.
//
// [Create] returns a [Sink], a draas.VolumeSink and draas.VerifiableSink,
// writing streamOptimized (the default), monolithicSparse or monolithicFlat.
//
// # Format decisions
//
//   - Sizes. A VMDK's capacity is a number of 512-byte sectors. A Sink for a
//     disk whose size is not a multiple of 512 holds the size rounded up
//     ([Sink.Size]); the bytes past the requested size read as zeros. A
//     Source's Size is always the recorded capacity.
//   - Grains. Sinks write 64 KiB grains and 512-entry grain tables, as
//     VMware and qemu-img do. All-zero grains are not stored (grain table
//     entry 0). Readers treat entry 1 (a "zeroed grain") as zeros too.
//   - Order. A parallel copier delivers blocks out of order. The
//     streamOptimized Sink appends grains in arrival order, each with its LBA
//     in its marker, and writes the grain tables, the grain directory, the
//     footer and the end-of-stream marker at Commit (header gdOffset =
//     GD_AT_END, as VMware's own streamOptimized files). Memory is bounded
//     by the grain tables (4 bytes per stored grain), never by data; nothing
//     is buffered for reordering. qemu-img check and compare accept these
//     files; every test checks that.
//   - Compression. Grains are deflated (zlib) in the goroutine that calls
//     WriteBlock, so blockcopy's concurrent workers compress on every core,
//     with github.com/klauspost/compress at level 1 by default: disk data
//     that is already compressed or encrypted does not shrink at any level.
//   - Atomicity. Sinks write to PATH.draas-partial and rename into place at
//     Commit after fsync; without Overwrite an existing file is never
//     replaced (a hard link fails if it appeared meanwhile).
//   - Untrusted input. Open validates the headers, the footer, the
//     descriptor and every grain table entry against the file's size, loads
//     the grain tables (bounded by the file's size, not the capacity a
//     header claims), and inflates at most a grain per compressed grain,
//     verifying its checksum. FuzzOpen exercises this.
package vmdk
