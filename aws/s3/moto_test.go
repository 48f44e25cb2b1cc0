package s3_test

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/internal/oracle"
)

// TestMotoOracle runs the store's life cycle against moto_server, an S3
// emulator nobody here wrote: two points, an incremental one uploading only
// its change, read-back, corruption detection, prune and GC.
func TestMotoOracle(t *testing.T) {
	t.Parallel()
	start := time.Now()
	url := oracle.StartMoto(t)
	t.Logf("moto_server answered after %s", time.Since(start).Round(time.Millisecond))
	cnt := &counter{next: http.DefaultTransport, n: make(map[string]int)}
	client := newClient(url, cnt)
	ctx := t.Context()
	if _, err := client.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatal(err)
	}
	var offset time.Duration // added to the real clock, to age objects for GC
	opts := s3.Options{Encryption: s3.EncryptionS3, Clock: func() time.Time { return time.Now().Add(offset) }}
	st := s3.New(client, testBucket, "oracle", opts)

	const size = 9*s3.BlockSize + 777
	os0, data := makeDisk(20, size), makeDisk(21, 3*s3.BlockSize)
	p1 := backup(t, st, "vm-1", time.Time{}, map[string][]byte{"os": os0, "data": data})

	os1 := bytes.Clone(os0)
	os1[5*s3.BlockSize+1] ^= 0x55
	cnt.reset()
	p2 := backup(t, st, "vm-1", time.Now().Add(time.Second), map[string][]byte{"os": os1, "data": data})
	if got := cnt.get("PUT chunk"); got != 1 {
		t.Errorf("incremental point uploaded %d chunks, want 1", got)
	}

	pts, err := st.Points(ctx, "vm-1")
	if err != nil || len(pts) != 2 || pts[0].ID != p1.ID() || pts[1].ID != p2.ID() {
		t.Fatalf("Points = %v, %v", pts, err)
	}
	for _, c := range []struct {
		point, disk string
		want        []byte
	}{{p1.ID(), "os", os0}, {p2.ID(), "os", os1}, {p2.ID(), "data", data}} {
		src, err := st.OpenDisk(ctx, "vm-1", c.point, c.disk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), c.want) {
			t.Errorf("point %s disk %s reads back wrong", c.point, c.disk)
		}
	}
	src, err := source(st.OpenDisk(ctx, "vm-1", p2.ID(), "os"))
	if err != nil {
		t.Fatal(err)
	}
	exts, err := src.ChangedExtents(ctx, p1.ID())
	if err != nil || !slices.Equal(exts, []draas.Extent{{Offset: 5 * s3.BlockSize, Length: s3.BlockSize}}) {
		t.Errorf("ChangedExtents = %v, %v", exts, err)
	}

	// Corrupt a chunk through the API: the read fails and names the block.
	b0 := block(data, 0)
	if _, err := client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(chunkKey("oracle", b0.Checksum)),
		Body: bytes.NewReader(append([]byte{0}, make([]byte, len(b0.Data))...)),
	}); err != nil {
		t.Fatal(err)
	}
	dsrc, err := st.OpenDisk(ctx, "vm-1", p2.ID(), "data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dsrc.ReadAt(ctx, make([]byte, 100), 0); !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Errorf("ReadAt of a corrupt chunk: %v, want ErrChecksumMismatch", err)
	}
	if _, err := st.OpenDisk(ctx, "vm-1", "20000101T000000Z-00000000", "os"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("OpenDisk of an unknown point: %v, want ErrNotFound", err)
	}

	// Prune to one point, then GC with the clock two days ahead: exactly
	// p1's block 5 of os goes.
	if ps, err := st.Prune(ctx, "vm-1", 1); err != nil || !slices.Equal(ps.Deleted, []string{p1.ID()}) {
		t.Fatalf("Prune = %+v, %v", ps, err)
	}
	offset = 48 * time.Hour
	gs, err := st.GC(ctx, s3.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gs.Deleted != 1 {
		t.Errorf("GC = %+v, want 1 chunk deleted", gs)
	}
	src, err = source(st.OpenDisk(ctx, "vm-1", p2.ID(), "os"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, src), os1) {
		t.Error("the kept point reads back wrong after GC")
	}
}
