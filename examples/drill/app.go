package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

// blockSize is the block size of the generated disks, of the backup store's
// chunks and of EBS snapshots: 512 KiB, so that one changed block of a disk
// is one changed chunk and one PutSnapshotBlock.
const blockSize = draastest.DefaultBlockSize

// vmSpec describes a VM of the application the drill protects.
type vmSpec struct {
	// Name is the VM's name in the plan, the backup store and the DR copies'
	// tags.
	Name string
	// Role says what the VM does, for the report.
	Role  string
	Disks []diskSpec
}

// diskSpec describes one generated disk.
type diskSpec struct {
	Name    string
	SizeMiB int64
	// DataPercent is the share of the disk that holds data, in runs of
	// random length; the rest reads as zeros (never-written space).
	DataPercent int
}

// standardApp is the application the demo protects: a three-tier web shop
// of four disks, 320 MiB in all, about two thirds of it data.
func standardApp() []vmSpec {
	return []vmSpec{
		{Name: "db", Role: "database", Disks: []diskSpec{{"os", 64, 60}, {"data", 128, 70}}},
		{Name: "app", Role: "application server", Disks: []diskSpec{{"os", 64, 55}}},
		{Name: "web", Role: "web server", Disks: []diskSpec{{"os", 64, 50}}},
	}
}

// vm is a protected VM: its spec and the current content of its disks, as
// the hypervisor would show them.
type vm struct {
	spec  vmSpec
	disks []*draastest.Disk // in the order of spec.Disks
}

// draasVM returns the VM as the plan lists it.
func (v *vm) draasVM() draas.VM {
	out := draas.VM{Name: v.spec.Name, CPUs: 2, MemoryMiB: 4096, Firmware: "bios"}
	for i, d := range v.disks {
		out.Disks = append(out.Disks, draas.Disk{Name: v.spec.Disks[i].Name, Size: d.Size()})
	}
	return out
}

// generateDisk returns a disk of the spec's size whose data lies in runs of
// 64 KiB to 2 MiB, not aligned to blocks, so that blocks are all data, all
// zeros, or mixed, as on a real file system.
func generateDisk(rng *rand.Rand, spec diskSpec) *draastest.Disk {
	size := spec.SizeMiB << 20
	d := draastest.NewDisk(size, blockSize)
	const unit = 64 << 10
	buf := make([]byte, 32*unit)
	for off := int64(0); off < size; {
		n := min(int64(1+rng.IntN(32))*unit, size-off)
		if rng.IntN(100) < spec.DataPercent {
			p := buf[:n]
			fillRandom(rng, p)
			_, _ = d.WriteAt(p, off) // cannot fail: p fits in the disk
		}
		off += n
	}
	return d
}

// changeDisk changes percent % of the disk's blocks (at least one), as a
// running VM would between two backups: most changes write 4 KiB up to a
// whole block of new data, 4 KiB aligned, anywhere on the disk; every
// fourth change of a block that holds data zeros it whole, as a guest
// trimming freed space does, which an incremental EBS snapshot must record
// by writing zeros over its parent's data. It returns the number of blocks
// whose content changed.
func changeDisk(rng *rand.Rand, d *draastest.Disk, percent float64) int {
	nblocks := (d.Size() + blockSize - 1) / blockSize
	n := max(1, int(float64(nblocks)*percent/100+0.5))
	buf := make([]byte, blockSize)
	for i, b := range rng.Perm(int(nblocks))[:n] {
		off := int64(b) * blockSize
		blen := min(blockSize, d.Size()-off)
		held := make([]byte, blen)
		_, _ = d.ReadAt(context.Background(), held, off)
		if i%4 == 3 && !isZero(held) {
			clear(buf[:blen])
			_, _ = d.WriteAt(buf[:blen], off)
			continue
		}
		pages := blen / 4096
		length := (1 + rng.Int64N(pages)) * 4096
		at := off + rng.Int64N(pages-length/4096+1)*4096
		p := buf[:length]
		fillRandom(rng, p)
		p[0] |= 1 // never all zeros: the write is a change even over a hole
		_, _ = d.WriteAt(p, at)
	}
	return n
}

// fillRandom fills p with pseudo-random bytes from rng.
func fillRandom(rng *rand.Rand, p []byte) {
	for ; len(p) >= 8; p = p[8:] {
		binary.LittleEndian.PutUint64(p, rng.Uint64())
	}
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

func isZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// describeDisk reports a generated disk's size and data in a few words.
func describeDisk(name string, d *draastest.Disk) string {
	nblocks := (d.Size() + blockSize - 1) / blockSize
	return fmt.Sprintf("%s %s (%d of %d blocks hold data)", name, formatBytes(d.Size()), d.StoredBlocks(), nblocks)
}
