// Command mkimage writes a raw disk image for benchmarks: blocks of random
// data and blocks of written zeros (allocated, not holes), interleaved in a
// pseudo-random order that the seed makes repeatable.
//
//	go run ./bench/mkimage -size-mib 2048 -block-kib 512 -data-percent 50 -o img.raw
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
)

func main() {
	var (
		sizeMiB  = flag.Int64("size-mib", 2048, "image size in MiB")
		blockKiB = flag.Int64("block-kib", 512, "block size in KiB")
		dataPct  = flag.Int("data-percent", 50, "percentage of blocks that hold random data; the rest are written zeros")
		seed     = flag.Uint64("seed", 1, "seed of the data and of the block order")
		out      = flag.String("o", "", "output `file` (required)")
	)
	flag.Parse()
	if *out == "" || *sizeMiB <= 0 || *blockKiB <= 0 || *dataPct < 0 || *dataPct > 100 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage [-size-mib N] [-block-kib N] [-data-percent P] [-seed S] -o FILE")
		os.Exit(2)
	}
	if err := write(*out, *sizeMiB<<20, *blockKiB<<10, *dataPct, *seed); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

// write creates the image at path: size bytes in blocks of bs bytes, exactly
// dataPct % of them random data, the rest zeros, in a shuffled order.
func write(path string, size, bs int64, dataPct int, seed uint64) error {
	nblocks := (size + bs - 1) / bs
	isData := make([]bool, nblocks)
	for i := range nblocks * int64(dataPct) / 100 {
		isData[i] = true
	}
	order := rand.New(rand.NewPCG(seed, 1))
	order.Shuffle(len(isData), func(i, j int) { isData[i], isData[j] = isData[j], isData[i] })

	var key [32]byte
	key[0] = byte(seed)
	data := rand.NewChaCha8(key)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	buf := make([]byte, bs)
	zeros := make([]byte, bs)
	for i, d := range isData {
		n := min(bs, size-int64(i)*bs)
		p := zeros[:n]
		if d {
			p = buf[:n]
			_, _ = data.Read(p)
		}
		if _, err := w.Write(p); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
