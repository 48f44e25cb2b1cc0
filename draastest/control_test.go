package draastest_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

func TestCloudVolumeFromSnapshot(t *testing.T) {
	ctx := t.Context()
	c := draastest.NewCloud(nil)
	snap := draastest.DiskFrom([]byte("boot"), 0)
	c.AddSnapshot("snap-a", snap)
	id, err := c.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: "snap-a", Tags: map[string]string{draas.TagVM: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := c.Volume(id)
	if !ok || v.State != "available" || v.SizeGiB != 1 || v.SnapshotID != "snap-a" || v.VolumeType != "gp3" {
		t.Errorf("Volume(%s) = %+v, %v", id, v, ok)
	}
	if got := c.Tags(id)[draas.TagVM]; got != "web" {
		t.Errorf("volume tag %s = %q, want web", draas.TagVM, got)
	}
	d, err := c.VolumeDisk(id)
	if err != nil {
		t.Fatal(err)
	}
	snap.WriteAt([]byte("XXXX"), 0) // the volume is a copy
	p := make([]byte, 4)
	if d.ReadAt(ctx, p, 0); d.Size() != draastest.GiB || string(p) != "boot" {
		t.Errorf("volume disk has size %d and starts %q, want 1 GiB starting with boot", d.Size(), p)
	}
	if _, err := c.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: "snap-a", SizeGiB: 0}); err != nil {
		t.Error(err)
	}
	big, err := c.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: "snap-a", SizeGiB: 20})
	if v, _ := c.Volume(big); err != nil || v.SizeGiB != 20 {
		t.Errorf("volume with SizeGiB 20 = %+v, %v", v, err)
	}
	snap5 := draastest.NewDisk(5*draastest.GiB, 0)
	c.AddSnapshot("snap-5", snap5)
	if _, err := c.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: "snap-5", SizeGiB: 4}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("volume smaller than its snapshot: error %v, want ErrInvalid", err)
	}
}

func TestCloudClientTokenSurvivesRetry(t *testing.T) {
	ctx := t.Context()
	c := draastest.NewCloud(nil)
	c.AddSnapshot("snap-a", draastest.NewDisk(1, 0))
	c.Faults().FailNth("CreateVolume", 1, draas.ErrTransient)
	req := draas.VolumeRequest{SnapshotID: "snap-a", ClientToken: "plan/vm/volume"}
	if _, err := c.CreateVolume(ctx, req); !errors.Is(err, draas.ErrTransient) {
		t.Fatalf("first CreateVolume: error %v, want the injected ErrTransient", err)
	}
	a, err := c.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateVolume(ctx, req)
	if err != nil || a != b {
		t.Errorf("retried CreateVolume = %s, %v; want %s", b, err, a)
	}
	if n := len(c.Volumes()); n != 1 {
		t.Errorf("%d volumes exist, want 1", n)
	}
	if c.Calls("CreateVolume") != 3 {
		t.Errorf("Calls(CreateVolume) = %d, want 3", c.Calls("CreateVolume"))
	}
	other := req
	other.SizeGiB = 50
	if _, err := c.CreateVolume(ctx, other); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("token reused for another request: error %v, want ErrConflict", err)
	}
}

func TestCloudInstanceLifecycle(t *testing.T) {
	ctx := t.Context()
	c := draastest.NewCloud(nil)
	c.AddSnapshot("snap-a", draastest.NewDisk(1, 0))
	data, _ := c.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: "snap-a"})

	if _, err := c.Launch(ctx, draas.LaunchRequest{InstanceType: "z9.huge"}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("unknown instance type: error %v, want ErrInvalid", err)
	}
	if _, err := c.Launch(ctx, draas.LaunchRequest{InstanceType: "m5.large", DataVolumeIDs: []string{"vol-missing"}}); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("missing volume: error %v, want ErrNotFound", err)
	}
	if n := len(c.Instances()); n != 0 {
		t.Fatalf("failed launches left %d instances", n)
	}

	inst, err := c.Launch(ctx, draas.LaunchRequest{Name: "web", InstanceType: "m5.xlarge", DataVolumeIDs: []string{data}})
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.VolumeIDs) != 2 || inst.VolumeIDs[1] != data {
		t.Fatalf("instance volumes %v, want a new root and %s", inst.VolumeIDs, data)
	}
	root := inst.VolumeIDs[0]
	if c.Tags(inst.ID)["Name"] != "web" {
		t.Errorf("instance tags %v, want Name=web", c.Tags(inst.ID))
	}
	if _, err := c.Launch(ctx, draas.LaunchRequest{InstanceType: "m5.large", DataVolumeIDs: []string{data}}); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("launch with an attached volume: error %v, want ErrConflict", err)
	}
	if err := c.DeleteVolume(ctx, data); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("DeleteVolume of an attached volume: error %v, want ErrConflict", err)
	}
	shape, err := c.Shape(ctx, inst.ID)
	if err != nil || shape.CPUs != 4 || shape.MemoryMiB != 16384 || len(shape.Disks) != 2 || shape.Disks[0].Size != 8*draastest.GiB {
		t.Errorf("Shape = %+v, %v; want 4 CPUs, 16384 MiB, an 8 GiB root and a data disk", shape, err)
	}
	if err := c.Stop(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx, inst.ID); st.State != "stopped" || st.SystemOK || st.InstanceOK {
		t.Errorf("Status after Stop = %+v", st)
	}
	if err := c.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, inst.ID); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("Stop of a terminated instance: error %v, want ErrConflict", err)
	}
	want := []string{"pending", "running", "stopping", "stopped", "shutting-down", "terminated"}
	if got := c.History(inst.ID); !slices.Equal(got, want) {
		t.Errorf("History = %v, want %v", got, want)
	}
	if v, _ := c.Volume(root); v.State != "deleted" {
		t.Errorf("root volume made from the image is %s after Terminate, want deleted", v.State)
	}
	if v, _ := c.Volume(data); v.State != "available" || v.AttachedTo != "" {
		t.Errorf("requested volume is %+v after Terminate, want available and detached", v)
	}
}

func TestCloudFaults(t *testing.T) {
	f := new(draastest.Faults)
	c := draastest.NewCloud(f)
	f.Throttle("Status", 1)
	if _, err := c.Status(t.Context(), "i-1"); !errors.Is(err, draas.ErrThrottled) {
		t.Errorf("throttled Status: error %v, want ErrThrottled", err)
	}
	if c.Faults() != f || c.Calls("Status") != 1 {
		t.Errorf("Faults() is not the given Faults or Calls(Status) = %d", c.Calls("Status"))
	}
}

func TestHypervisorOpenDisk(t *testing.T) {
	ctx := t.Context()
	h := draastest.NewHypervisor(nil)
	shape := draas.Shape{CPUs: 2, MemoryMiB: 2048, Disks: []draas.Disk{{Name: "os", Size: 1 << 20}}}
	disk := draastest.DiskFrom(bytes.Repeat([]byte{1}, 1<<20), draastest.HypervisorBlockSize)
	if err := h.AddVM("db", shape, disk); err != nil {
		t.Fatal(err)
	}
	if err := h.AddVM("db", shape); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("AddVM of an existing name: error %v, want ErrConflict", err)
	}
	if err := h.AddVM("bad", shape, draastest.NewDisk(10, 0)); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("AddVM with a disk of the wrong size: error %v, want ErrInvalid", err)
	}
	sink, err := h.OpenDisk(ctx, "db", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !draas.NeedsZeroWrites(sink) {
		t.Error("a sink onto a disk holding data does not need zero writes")
	}
	zero := make([]byte, draastest.HypervisorBlockSize)
	if err := sink.WriteBlock(ctx, block(draastest.HypervisorBlockSize, 2, zero)); err != nil {
		t.Fatal(err)
	}
	sink.Abort(ctx)
	if got, _ := h.Disk("db", 0); got != disk || !draas.IsZero(disk.Bytes()[2*draastest.HypervisorBlockSize:3*draastest.HypervisorBlockSize]) {
		t.Error("a block written in place did not stay after Abort")
	}

	if err := h.PowerOn(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if on, _ := h.PoweredOn("db"); !on {
		t.Error("PoweredOn after PowerOn is false")
	}
	if _, err := h.OpenDisk(ctx, "db", 0); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("OpenDisk of a powered-on VM: error %v, want ErrConflict", err)
	}
	if got := h.VMs(); !slices.Equal(got, []string{"db"}) {
		t.Errorf("VMs() = %v", got)
	}
	shapeGot, err := h.VMShape(ctx, "db")
	if err != nil || shapeGot.Disks[0].Name != "os" {
		t.Errorf("VMShape = %+v, %v", shapeGot, err)
	}
}

func TestHypervisorCreateVMValidates(t *testing.T) {
	h := draastest.NewHypervisor(nil)
	for _, req := range []draas.VMRequest{
		{Shape: draas.Shape{CPUs: 1, MemoryMiB: 1}},
		{Name: "x", Shape: draas.Shape{CPUs: 0, MemoryMiB: 1}},
		{Name: "x", Shape: draas.Shape{CPUs: 1, MemoryMiB: 1, Disks: []draas.Disk{{Size: 0}}}},
	} {
		if err := h.CreateVM(t.Context(), req); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("CreateVM(%+v): error %v, want ErrInvalid", req, err)
		}
	}
}

func TestDNSRules(t *testing.T) {
	ctx := t.Context()
	d := draastest.NewDNS(nil, "example.com")
	a := draas.Record{Zone: "example.com", Name: "DB.example.com", Type: "a", TTL: 1500 * time.Millisecond, Values: []string{"10.1.2.3"}}
	if err := d.Upsert(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := d.Lookup(ctx, "example.com.", "db.example.com.", "A")
	if err != nil || got.Name != "db.example.com." || got.Zone != "example.com." || got.Type != "A" || got.TTL != time.Second {
		t.Errorf("Lookup = %+v, %v; want the record normalized, TTL 1s", got, err)
	}
	cname := draas.Record{Zone: "example.com", Name: "db.example.com", Type: "CNAME", TTL: time.Minute, Values: []string{"db.aws.example.net"}}
	if err := d.Upsert(ctx, cname); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("CNAME beside an A record: error %v, want ErrConflict", err)
	}
	for _, bad := range []draas.Record{
		{Zone: "example.com", Name: "db.example.org", Type: "A", Values: []string{"10.0.0.1"}},
		{Zone: "example.com", Name: "x.example.com", Type: "A", Values: []string{"db.example.net"}},
		{Zone: "example.com", Name: "x.example.com", Type: "A"},
		{Zone: "example.com", Name: "x.example.com", Type: "CNAME", Values: []string{"a.", "b."}},
		{Zone: "example.com", Name: "x.example.com", Type: "MX", Values: []string{"10 mail."}},
	} {
		if err := d.Upsert(ctx, bad); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Upsert(%+v): error %v, want ErrInvalid", bad, err)
		}
	}
	if err := d.Upsert(ctx, draas.Record{Zone: "other.com", Name: "a.other.com", Type: "A", Values: []string{"10.0.0.1"}}); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("Upsert into an unknown zone: error %v, want ErrNotFound", err)
	}
	if n := len(d.Records("example.com")); n != 1 {
		t.Errorf("zone holds %d records, want 1", n)
	}
	d.Faults().FailNth("Upsert", 1, nil)
	if err := d.Upsert(ctx, a); !errors.Is(err, draas.ErrTransient) || d.Calls("Upsert") != 9 {
		t.Errorf("injected Upsert failure: %v, calls %d", err, d.Calls("Upsert"))
	}
}
