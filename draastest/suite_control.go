package draastest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendraas/draas"
)

// Well-formed IDs of resources that do not exist, for the suites.
const (
	missingInstance = "i-0123456789abcdef0"
	missingVolume   = "vol-0123456789abcdef0"
	missingSnapshot = "snap-0123456789abcdef0"
)

// TestInstanceLauncher checks that an implementation of
// draas.InstanceLauncher meets its contract. open returns a fresh launcher
// and the ID of a completed snapshot to make volumes from; it is called once
// per subtest. The suite launches t3.micro instances (2 CPUs, 1024 MiB) with
// RootVolumeID and DataVolumeIDs set and no ImageID or SubnetID, so the
// implementation must supply defaults for those.
//
// The suite checks that:
//   - CreateVolume returns the same volume for a repeated client token and
//     another for another token, and fails with draas.ErrNotFound for an
//     unknown snapshot;
//   - DeleteVolume of a deleted or unknown volume is not an error;
//   - Launch returns a running instance with the requested volumes, root
//     first, and the same instance for a repeated client token; its Status
//     reaches both checks OK within a minute; its Shape has the type's CPUs
//     and memory and one disk per volume;
//   - Stop leaves the instance stopped, and stopping it again is not an
//     error;
//   - Terminate leaves it terminated (or gone: draas.ErrNotFound), and
//     terminating it again, or an unknown instance, is not an error;
//   - Status, Shape and Stop of an unknown instance fail with
//     draas.ErrNotFound.
func TestInstanceLauncher(t *testing.T, open func(t *testing.T) (l draas.InstanceLauncher, snapshotID string)) {
	t.Run("Volumes", func(t *testing.T) {
		l, snap := open(t)
		ctx := t.Context()
		a, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "draastest-vol-a"})
		if err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
		a2, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "draastest-vol-a"})
		if err != nil {
			t.Fatalf("CreateVolume with a repeated client token: %v", err)
		}
		if a2 != a {
			t.Errorf("CreateVolume with a repeated client token returned %q, want the first volume %q", a2, a)
		}
		b, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "draastest-vol-b"})
		if err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
		if b == a || a == "" || b == "" {
			t.Errorf("CreateVolume with two tokens returned %q and %q, want two different IDs", a, b)
		}
		for _, id := range []string{a, b, a, missingVolume} {
			if err := l.DeleteVolume(ctx, id); err != nil {
				t.Errorf("DeleteVolume(%s): %v", id, err)
			}
		}
	})

	t.Run("UnknownSnapshot", func(t *testing.T) {
		l, _ := open(t)
		_, err := l.CreateVolume(t.Context(), draas.VolumeRequest{SnapshotID: missingSnapshot, ClientToken: "draastest-vol-missing"})
		if !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("CreateVolume from an unknown snapshot: error %v, want one wrapping draas.ErrNotFound", err)
		}
	})

	t.Run("Lifecycle", func(t *testing.T) {
		l, snap := open(t)
		ctx := t.Context()
		root, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "draastest-root"})
		if err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
		data, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "draastest-data"})
		if err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
		req := draas.LaunchRequest{
			Name:          "draastest-instance",
			InstanceType:  "t3.micro",
			RootVolumeID:  root,
			DataVolumeIDs: []string{data},
			Tags:          map[string]string{draas.TagDrill: "draastest"},
			ClientToken:   "draastest-launch",
		}
		inst, err := l.Launch(ctx, req)
		if err != nil {
			t.Fatalf("Launch: %v", err)
		}
		if inst.ID == "" || inst.State != "running" || inst.InstanceType != "t3.micro" {
			t.Errorf("Launch returned %+v, want an ID, state running and type t3.micro", inst)
		}
		if len(inst.VolumeIDs) < 2 || inst.VolumeIDs[0] != root || !slices.Contains(inst.VolumeIDs, data) {
			t.Errorf("Launch returned volumes %v, want %s first and %s", inst.VolumeIDs, root, data)
		}
		again, err := l.Launch(ctx, req)
		if err != nil {
			t.Fatalf("Launch with a repeated client token: %v", err)
		}
		if again.ID != inst.ID {
			t.Errorf("Launch with a repeated client token returned %s, want the first instance %s", again.ID, inst.ID)
		}

		deadline := time.Now().Add(time.Minute)
		for {
			st, err := l.Status(ctx, inst.ID)
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if st.State != "running" {
				t.Fatalf("Status after Launch: state %q, want running", st.State)
			}
			if st.SystemOK && st.InstanceOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Status checks not OK a minute after Launch: %+v", st)
			}
			time.Sleep(100 * time.Millisecond)
		}

		shape, err := l.Shape(ctx, inst.ID)
		if err != nil {
			t.Fatalf("Shape: %v", err)
		}
		if shape.CPUs != 2 || shape.MemoryMiB != 1024 || len(shape.Disks) != 2 {
			t.Errorf("Shape of a t3.micro with two volumes = %+v, want 2 CPUs, 1024 MiB and 2 disks", shape)
		}
		for i, d := range shape.Disks {
			if d.Size <= 0 {
				t.Errorf("Shape disk %d has size %d, want positive", i, d.Size)
			}
		}

		for range 2 {
			if err := l.Stop(ctx, inst.ID); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if st, err := l.Status(ctx, inst.ID); err != nil || st.State != "stopped" {
				t.Fatalf("Status after Stop = %+v, %v, want state stopped", st, err)
			}
		}
		for range 2 {
			if err := l.Terminate(ctx, inst.ID); err != nil {
				t.Fatalf("Terminate: %v", err)
			}
			st, err := l.Status(ctx, inst.ID)
			if err == nil && st.State != "terminated" || err != nil && !errors.Is(err, draas.ErrNotFound) {
				t.Fatalf("Status after Terminate = %+v, %v, want state terminated or draas.ErrNotFound", st, err)
			}
		}
		for _, id := range []string{root, data} {
			if err := l.DeleteVolume(ctx, id); err != nil {
				t.Errorf("DeleteVolume(%s) after Terminate: %v", id, err)
			}
		}
	})

	t.Run("UnknownInstance", func(t *testing.T) {
		l, _ := open(t)
		ctx := t.Context()
		if _, err := l.Status(ctx, missingInstance); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Status of an unknown instance: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if _, err := l.Shape(ctx, missingInstance); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Shape of an unknown instance: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if err := l.Stop(ctx, missingInstance); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Stop of an unknown instance: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if err := l.Terminate(ctx, missingInstance); err != nil {
			t.Errorf("Terminate of an unknown instance: %v, want nil", err)
		}
	})
}

// TestHypervisor checks that an implementation of draas.Hypervisor meets its
// contract. open returns a hypervisor on which the suite may create VMs
// named "draastest-*"; it is called once per subtest. VM requests carry only
// a name and a shape, so the implementation must supply placement defaults.
//
// The suite checks that:
//   - CreateVM makes a VM whose VMShape has the requested CPUs, memory,
//     firmware and disk sizes; repeating it is not an error, and repeating it
//     with another shape fails with draas.ErrConflict;
//   - a new VM's disks read as zeros and have the requested sizes;
//   - blocks written through OpenDisk and committed read back through
//     ReadDisk, and the VM's other disks stay zero;
//   - PowerOn and PowerOff succeed, also when repeated;
//   - VMShape, OpenDisk, ReadDisk and PowerOn of an unknown VM fail with
//     draas.ErrNotFound, and OpenDisk of a disk index the VM lacks fails.
func TestHypervisor(t *testing.T, open func(t *testing.T) draas.Hypervisor) {
	shape := draas.Shape{
		CPUs: 2, MemoryMiB: 1024, Firmware: "bios",
		Disks: []draas.Disk{{Name: "disk-0", Size: 4 << 20}, {Name: "disk-1", Size: 1 << 20}},
	}
	t.Run("CreateVM", func(t *testing.T) {
		h := open(t)
		ctx := t.Context()
		req := draas.VMRequest{Name: "draastest-create", Shape: shape}
		for range 2 {
			if err := h.CreateVM(ctx, req); err != nil {
				t.Fatalf("CreateVM: %v", err)
			}
		}
		got, err := h.VMShape(ctx, req.Name)
		if err != nil {
			t.Fatalf("VMShape: %v", err)
		}
		if got.CPUs != shape.CPUs || got.MemoryMiB != shape.MemoryMiB || got.Firmware != shape.Firmware ||
			!slices.EqualFunc(got.Disks, shape.Disks, func(a, b draas.Disk) bool { return a.Size == b.Size }) {
			t.Errorf("VMShape = %+v, want %+v", got, shape)
		}
		other := req
		other.Shape.CPUs = 4
		if err := h.CreateVM(ctx, other); !errors.Is(err, draas.ErrConflict) {
			t.Errorf("CreateVM of an existing VM with another shape: error %v, want one wrapping draas.ErrConflict", err)
		}
	})

	t.Run("Disks", func(t *testing.T) {
		h := open(t)
		ctx := t.Context()
		const name = "draastest-disks"
		if err := h.CreateVM(ctx, draas.VMRequest{Name: name, Shape: shape}); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
		for i, d := range shape.Disks {
			src, err := h.ReadDisk(ctx, name, i)
			if err != nil {
				t.Fatalf("ReadDisk(%d): %v", i, err)
			}
			if src.Size() != d.Size {
				t.Errorf("disk %d has size %d, want %d", i, src.Size(), d.Size)
			}
			if got := ReadAll(t, src); !draas.IsZero(got) {
				t.Errorf("disk %d of a new VM is not all zeros", i)
			}
		}

		sink, err := h.OpenDisk(ctx, name, 0)
		if err != nil {
			t.Fatalf("OpenDisk: %v", err)
		}
		content := randomBytes(21, int(shape.Disks[0].Size))
		bs := int64(sink.BlockSize())
		if bs <= 0 {
			t.Fatalf("OpenDisk sink BlockSize() = %d, want positive", bs)
		}
		for off := int64(0); off < int64(len(content)); off += bs {
			data := content[off:min(off+bs, int64(len(content)))]
			b := draas.Block{Index: off / bs, Offset: off, Data: data, Checksum: sha256.Sum256(data)}
			if err := sink.WriteBlock(ctx, b); err != nil {
				t.Fatalf("WriteBlock at %d: %v", off, err)
			}
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		src, err := h.ReadDisk(ctx, name, 0)
		if err != nil {
			t.Fatalf("ReadDisk: %v", err)
		}
		if !bytes.Equal(ReadAll(t, src), content) {
			t.Error("ReadDisk after writing through OpenDisk does not return what was written")
		}
		if src, err := h.ReadDisk(ctx, name, 1); err != nil {
			t.Errorf("ReadDisk(1): %v", err)
		} else if !draas.IsZero(ReadAll(t, src)) {
			t.Error("writing disk 0 changed disk 1")
		}
		if s, err := h.OpenDisk(ctx, name, len(shape.Disks)); err == nil {
			s.Abort(ctx)
			t.Errorf("OpenDisk of disk %d of a VM with %d disks succeeded, want an error", len(shape.Disks), len(shape.Disks))
		}
	})

	t.Run("Power", func(t *testing.T) {
		h := open(t)
		ctx := t.Context()
		const name = "draastest-power"
		if err := h.CreateVM(ctx, draas.VMRequest{Name: name, Shape: shape}); err != nil {
			t.Fatalf("CreateVM: %v", err)
		}
		for _, step := range []struct {
			name string
			fn   func(context.Context, string) error
		}{{"PowerOn", h.PowerOn}, {"PowerOn again", h.PowerOn}, {"PowerOff", h.PowerOff}, {"PowerOff again", h.PowerOff}} {
			if err := step.fn(ctx, name); err != nil {
				t.Errorf("%s: %v", step.name, err)
			}
		}
	})

	t.Run("UnknownVM", func(t *testing.T) {
		h := open(t)
		ctx := t.Context()
		const name = "draastest-missing"
		if _, err := h.VMShape(ctx, name); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("VMShape of an unknown VM: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if _, err := h.OpenDisk(ctx, name, 0); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("OpenDisk of an unknown VM: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if _, err := h.ReadDisk(ctx, name, 0); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("ReadDisk of an unknown VM: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if err := h.PowerOn(ctx, name); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("PowerOn of an unknown VM: error %v, want one wrapping draas.ErrNotFound", err)
		}
	})
}

// ReadAll reads the whole of src, failing the test if it cannot.
func ReadAll(t testing.TB, src draas.BlockSource) []byte {
	t.Helper()
	p := make([]byte, src.Size())
	if n, err := src.ReadAt(t.Context(), p, 0); n != len(p) {
		t.Fatalf("ReadAt of the whole disk read %d of %d bytes: %v", n, len(p), err)
	}
	return p
}

// TestDNS checks that an implementation of draas.DNS meets its contract.
// open returns a DNS and the domain name of a zone it serves (e.g.
// "example.com."), which the suite passes as Record.Zone and under which it
// creates records named "draastest-*"; it is called once per subtest. Names
// are compared without regard to case or a trailing dot.
//
// The suite checks that:
//   - Lookup of a missing record fails with draas.ErrNotFound;
//   - an upserted A record is found with its TTL and values, and a second
//     Upsert replaces them;
//   - a CNAME record is found by its type and not by another;
//   - Delete removes a record, and deleting it again is not an error.
func TestDNS(t *testing.T, open func(t *testing.T) (dns draas.DNS, zone string)) {
	name := func(zone, label string) string {
		return label + "." + strings.TrimSuffix(zone, ".") + "."
	}
	t.Run("A", func(t *testing.T) {
		d, zone := open(t)
		ctx := t.Context()
		r := draas.Record{Zone: zone, Name: name(zone, "draastest-a"), Type: "A", TTL: 60 * time.Second, Values: []string{"10.0.0.1"}}
		if _, err := d.Lookup(ctx, zone, r.Name, "A"); !errors.Is(err, draas.ErrNotFound) {
			t.Fatalf("Lookup of a missing record: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if err := d.Upsert(ctx, r); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		checkRecord(t, d, r)
		r.TTL, r.Values = 300*time.Second, []string{"10.0.0.2", "10.0.0.3"}
		if err := d.Upsert(ctx, r); err != nil {
			t.Fatalf("Upsert replacing a record: %v", err)
		}
		checkRecord(t, d, r)
		for range 2 {
			if err := d.Delete(ctx, r); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := d.Lookup(ctx, zone, r.Name, "A"); !errors.Is(err, draas.ErrNotFound) {
				t.Fatalf("Lookup after Delete: error %v, want one wrapping draas.ErrNotFound", err)
			}
		}
	})

	t.Run("CNAME", func(t *testing.T) {
		d, zone := open(t)
		ctx := t.Context()
		r := draas.Record{Zone: zone, Name: name(zone, "draastest-c"), Type: "CNAME", TTL: 60 * time.Second, Values: []string{name(zone, "draastest-target")}}
		if err := d.Upsert(ctx, r); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		checkRecord(t, d, r)
		if _, err := d.Lookup(ctx, zone, r.Name, "A"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Lookup of type A where only a CNAME exists: error %v, want one wrapping draas.ErrNotFound", err)
		}
		if err := d.Delete(ctx, r); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := d.Lookup(ctx, zone, r.Name, "CNAME"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Lookup after Delete: error %v, want one wrapping draas.ErrNotFound", err)
		}
	})

	t.Run("DeleteMissing", func(t *testing.T) {
		d, zone := open(t)
		r := draas.Record{Zone: zone, Name: name(zone, "draastest-never"), Type: "A", TTL: time.Minute, Values: []string{"10.0.0.9"}}
		if err := d.Delete(t.Context(), r); err != nil {
			t.Errorf("Delete of a missing record: %v, want nil", err)
		}
	})
}

// checkRecord looks want up and compares what it finds.
func checkRecord(t *testing.T, d draas.DNS, want draas.Record) {
	t.Helper()
	got, err := d.Lookup(t.Context(), want.Zone, want.Name, want.Type)
	if err != nil {
		t.Fatalf("Lookup %s %s: %v", want.Type, want.Name, err)
	}
	norm := func(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }
	values := func(r draas.Record) []string {
		v := make([]string, len(r.Values))
		for i, s := range r.Values {
			v[i] = norm(s)
		}
		slices.Sort(v)
		return v
	}
	if norm(got.Name) != norm(want.Name) || got.Type != want.Type || got.TTL != want.TTL || !slices.Equal(values(got), values(want)) {
		t.Errorf("Lookup %s %s = %+v, want %+v", want.Type, want.Name, got, want)
	}
}
