package guest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/opendraas/draas/guest"
)

// A Debian guest's root filesystem, mounted at a directory, is prepared for
// EC2; the record is kept as JSON until failback reverts it.
func Example() {
	root, err := os.MkdirTemp("", "guest-root")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	for name, content := range map[string]string{
		"etc/os-release":              "ID=debian\nVERSION_ID=\"12\"\n",
		"etc/initramfs-tools/modules": "# List of modules that you want to include in your initramfs.\n",
		"etc/fstab":                   "# static file system information\nUUID=9a8b / ext4 defaults 0 1\n/dev/sdb1 /srv ext4 defaults 0 2\n",
		"etc/network/interfaces":      "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet static\n  address 10.0.0.7/24\n  gateway 10.0.0.1\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	ctx := context.Background()
	var p guest.Preparer = guest.Linux{}
	changes, err := p.Prepare(ctx, root, guest.Options{
		DeviceUUIDs: map[string]string{"/dev/sdb1": "0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range changes.Files {
		fmt.Printf("%s: %s\n", f.Path, f.Why)
	}
	record, err := json.Marshal(changes) // keep it in the failover journal
	if err != nil {
		log.Fatal(err)
	}

	// At failback, on the same disk mounted again:
	var saved guest.Changes
	if err := json.Unmarshal(record, &saved); err != nil {
		log.Fatal(err)
	}
	if err := p.Revert(ctx, root, &saved); err != nil {
		log.Fatal(err)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	fmt.Printf("after Revert: %q\n", fstab)
	// Output:
	// etc/initramfs-tools/modules: initramfs-tools: add the EC2 drivers to every initramfs
	// etc/fstab: fstab: /srv: /dev/sdb1 → UUID=0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f; /srv: nofail
	// etc/network/interfaces: network: ifupdown static stanza to DHCP, DHCP on the cloud NIC
	// after Revert: "# static file system information\nUUID=9a8b / ext4 defaults 0 1\n/dev/sdb1 /srv ext4 defaults 0 2\n"
}
