package guestimage_test

import (
	"context"
	"fmt"
	"log"

	"github.com/opendraas/draas/guest/guestimage"
)

// Build the LVM guest (or take it from the cache) and check the negative
// control: from an NVMe disk it does not boot.
func ExampleBuild() {
	ctx := context.Background()
	img, err := guestimage.Build(ctx, guestimage.DebianVMware(guestimage.LayoutLVM), guestimage.Options{})
	if err != nil {
		log.Fatal(err) // wraps guestimage.ErrMissingTools without debootstrap, lvm2 or root
	}
	res, err := guestimage.Boot(ctx, img.Path, guestimage.BusNVMe, guestimage.BootOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome == guestimage.OutcomeRootNotFound, res.Line)
}
