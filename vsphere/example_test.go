package vsphere_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

// Example restores a VM into vCenter: a VM of the protected VM's shape, its
// disk written, read back and powered on. It runs against vcsim, govmomi's
// in-process vCenter simulator; against a real vCenter, pass its URL and the
// thumbprint it shows for its certificate (or Options.RootCAs).
func Example() {
	model := simulator.VPX()
	defer model.Remove()
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	model.Service.TLS = new(tls.Config) // vcsim's self-signed certificate
	server := model.Service.NewServer()
	defer server.Close()
	url := server.URL.String() // https://user:pass@127.0.0.1:PORT/sdk
	thumbprint := soap.ThumbprintSHA256(server.Certificate())

	ctx := context.Background()
	h, err := vsphere.Dial(ctx, url, vsphere.Options{Thumbprint: thumbprint})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close(ctx)

	// Placement defaults to the first datacenter, cluster, datastore and
	// network of the inventory; a plan would name them in the request.
	shape := draas.Shape{CPUs: 2, MemoryMiB: 2048, Firmware: "efi", Disks: []draas.Disk{{Size: 8 << 20}}}
	if err := h.CreateVM(ctx, draas.VMRequest{Name: "db01", Shape: shape}); err != nil {
		log.Fatal(err)
	}

	// A copier (package blockcopy) would fill the sink from a backup; here
	// one block.
	sink, err := h.OpenDisk(ctx, "db01", 0)
	if err != nil {
		log.Fatal(err)
	}
	data := bytes.Repeat([]byte("draas"), sink.BlockSize()/5+1)[:sink.BlockSize()]
	if err := sink.WriteBlock(ctx, draas.Block{Data: data, Checksum: sha256.Sum256(data)}); err != nil {
		sink.Abort(ctx)
		log.Fatal(err)
	}
	if err := sink.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	src, err := h.ReadDisk(ctx, "db01", 0)
	if err != nil {
		log.Fatal(err)
	}
	p := make([]byte, 10)
	if _, err := src.ReadAt(ctx, p, 0); err != nil {
		log.Fatal(err)
	}
	got, err := h.VMShape(ctx, "db01")
	if err != nil {
		log.Fatal(err)
	}
	if err := h.PowerOn(ctx, "db01"); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d CPUs, %d MiB, %s firmware\n", got.CPUs, got.MemoryMiB, got.Firmware)
	fmt.Printf("disk %s: %d bytes, starting %q\n", got.Disks[0].Name, got.Disks[0].Size, p)
	// Output:
	// 2 CPUs, 2048 MiB, efi firmware
	// disk scsi0:0: 8388608 bytes, starting "draasdraas"
}
