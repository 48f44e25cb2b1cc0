package draas_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opendraas/draas"
)

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 4095, 64 << 10, 64<<10 + 1, 1 << 20, 1<<20 + 3} {
		p := make([]byte, n)
		if !draas.IsZero(p) {
			t.Errorf("IsZero(%d zero bytes) = false", n)
		}
		for _, at := range []int{0, n / 2, n - 1} {
			if n == 0 {
				break
			}
			p[at] = 1
			if draas.IsZero(p) {
				t.Errorf("IsZero(%d bytes, byte %d set) = true", n, at)
			}
			p[at] = 0
		}
	}
}

func TestCheckBlock(t *testing.T) {
	const bs, size = 4096, 3*4096 + 100
	blk := func(idx, off int64, n int) draas.Block {
		return draas.Block{Index: idx, Offset: off, Data: make([]byte, n)}
	}
	for _, tc := range []struct {
		name    string
		b       draas.Block
		rounded int64 // 0: CheckBlock
		ok      bool
	}{
		{"first", blk(0, 0, bs), 0, true},
		{"short last", blk(3, 3*bs, 100), 0, true},
		{"misaligned", blk(0, 1, bs), 0, false},
		{"negative", blk(-1, -bs, bs), 0, false},
		{"wrong index", blk(1, 0, bs), 0, false},
		{"past the end", blk(4, 4*bs, bs), 0, false},
		{"short not last", blk(0, 0, bs/2), 0, false},
		{"oversized", blk(0, 0, bs+1), 0, false},
		{"last too long", blk(3, 3*bs, 101), 0, false},
		{"last padded", blk(3, 3*bs, bs), 0, false},
		{"empty", blk(0, 0, 0), 0, false},
		{"rounded: last padded", blk(3, 3*bs, bs), 5 * bs, true},
		{"rounded: short last", blk(3, 3*bs, 100), 5 * bs, true},
		{"rounded: past size", blk(4, 4*bs, bs), 5 * bs, true},
		{"rounded: past rounded", blk(5, 5*bs, bs), 5 * bs, false},
		{"rounded: short before size", blk(3, 3*bs, 99), 5 * bs, false},
		{"rounded: oversized", blk(4, 4*bs, bs+1), 5 * bs, false},
	} {
		var err error
		if tc.rounded == 0 {
			err = draas.CheckBlock(tc.b, bs, size)
		} else {
			err = draas.CheckBlockRounded(tc.b, bs, size, tc.rounded)
		}
		if tc.ok && err != nil {
			t.Errorf("%s: %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("%s: %v, want an error wrapping ErrInvalid", tc.name, err)
		}
	}
}

func TestSinkLifecycleCommit(t *testing.T) {
	var l draas.SinkLifecycle
	if err := l.BeginWrite(); err != nil {
		t.Fatalf("BeginWrite on a new lifecycle: %v", err)
	}
	committed := make(chan error, 1)
	go func() {
		if err := l.BeginCommit(); err != nil {
			committed <- err
			return
		}
		committed <- l.EndCommit(nil)
	}()
	select {
	case err := <-committed:
		t.Fatalf("Commit returned (%v) while a write was in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	l.EndWrite()
	if err := <-committed; err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if p := l.Phase(); p != draas.SinkCommitted {
		t.Errorf("Phase() = %v, want committed", p)
	}
	for name, err := range map[string]error{"BeginWrite": l.BeginWrite(), "BeginCommit": l.BeginCommit()} {
		if !errors.Is(err, draas.ErrClosed) {
			t.Errorf("%s after Commit: %v, want ErrClosed", name, err)
		}
	}
	if cleanup, err := l.BeginAbort(); cleanup || !errors.Is(err, draas.ErrClosed) {
		t.Errorf("BeginAbort after Commit = %t, %v; want false, ErrClosed", cleanup, err)
	}
	if p := l.Phase(); p != draas.SinkCommitted {
		t.Errorf("Phase() after a stray Abort = %v, want committed", p)
	}
}

func TestSinkLifecycleFailedCommit(t *testing.T) {
	boom := errors.New("boom")
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprint("retry=", retry), func(t *testing.T) {
			l := draas.SinkLifecycle{RetryCommit: retry}
			if err := l.BeginCommit(); err != nil {
				t.Fatal(err)
			}
			if err := l.EndCommit(boom); err != boom {
				t.Fatalf("EndCommit(boom) = %v", err)
			}
			if err := l.BeginWrite(); !errors.Is(err, draas.ErrClosed) {
				t.Errorf("BeginWrite after a failed Commit: %v, want ErrClosed", err)
			}
			err := l.BeginCommit()
			if retry != (err == nil) {
				t.Fatalf("BeginCommit after a failed Commit: %v, want success only with RetryCommit", err)
			}
			if err == nil {
				if cleanup, err := l.BeginAbort(); cleanup || !errors.Is(err, draas.ErrConflict) {
					t.Errorf("BeginAbort during Commit = %t, %v; want false, ErrConflict", cleanup, err)
				}
				if err := l.EndCommit(boom); err != boom {
					t.Fatal(err)
				}
			}
			if cleanup, err := l.BeginAbort(); !cleanup || err != nil {
				t.Errorf("BeginAbort after a failed Commit = %t, %v; want true, nil", cleanup, err)
			}
		})
	}
}

func TestSinkLifecycleAbortAndRelease(t *testing.T) {
	var l draas.SinkLifecycle
	if !l.Release() {
		t.Fatal("Release of an open lifecycle = false")
	}
	if l.Release() {
		t.Error("second Release = true")
	}
	if err := l.BeginWrite(); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("BeginWrite after Release: %v, want ErrClosed", err)
	}
	if err := l.BeginCommit(); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("BeginCommit after Release: %v, want ErrClosed", err)
	}
	if cleanup, err := l.BeginAbort(); !cleanup || err != nil {
		t.Errorf("BeginAbort after Release = %t, %v; want true, nil", cleanup, err)
	}
	if cleanup, err := l.BeginAbort(); cleanup || err != nil {
		t.Errorf("second BeginAbort = %t, %v; want false, nil", cleanup, err)
	}
	if err := l.BeginWrite(); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("BeginWrite after Abort: %v, want ErrClosed", err)
	}
}

func TestSinkLifecycleEnd(t *testing.T) {
	var l draas.SinkLifecycle
	if err := l.BeginCommit(); err != nil {
		t.Fatal(err)
	}
	l.End(draas.SinkAborted) // the point the sink belongs to is aborted
	if err := l.EndCommit(nil); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("EndCommit after End(aborted) = %v, want ErrClosed", err)
	}
	l.End(draas.SinkCommitted)
	if p := l.Phase(); p != draas.SinkAborted {
		t.Errorf("End(committed) after abort: phase %v, want aborted", p)
	}
}

// TestSinkLifecycleConcurrent runs writes against Commit; run it with -race.
func TestSinkLifecycleConcurrent(t *testing.T) {
	var l draas.SinkLifecycle
	var wg sync.WaitGroup
	var mu sync.Mutex
	afterCommit := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if err := l.BeginWrite(); err != nil {
					return
				}
				mu.Lock()
				if l.Phase() != draas.SinkOpen {
					afterCommit++
				}
				mu.Unlock()
				l.EndWrite()
			}
		}()
	}
	if err := l.BeginCommit(); err != nil {
		t.Fatal(err)
	}
	_ = l.EndCommit(nil)
	wg.Wait()
	if afterCommit != 0 {
		t.Errorf("%d writes ran while the lifecycle was not open", afterCommit)
	}
}

// The loops IsZero replaced, for the benchmark.
func isZeroLoop(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func isZeroCount(p []byte) bool { return bytes.Count(p, []byte{0}) == len(p) }

func isZeroTrim(p []byte) bool { return len(bytes.TrimLeft(p, "\x00")) == 0 }

func BenchmarkIsZero(b *testing.B) {
	zero := make([]byte, 512<<10) // an EBS block
	data := bytes.Repeat([]byte{1}, len(zero))
	for _, fn := range []struct {
		name string
		f    func([]byte) bool
	}{
		{"IsZero", draas.IsZero},
		{"loop", isZeroLoop},
		{"bytes.Count", isZeroCount},
		{"bytes.TrimLeft", isZeroTrim},
		{"words", isZeroWords},
	} {
		b.Run(fn.name+"/zero", func(b *testing.B) {
			b.SetBytes(int64(len(zero)))
			for b.Loop() {
				if !fn.f(zero) {
					b.Fatal("not zero")
				}
			}
		})
		b.Run(fn.name+"/data", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if fn.f(data) {
					b.Fatal("zero")
				}
			}
		})
	}
}

// isZeroWords compares 8 bytes at a time, the other fast way considered.
func isZeroWords(p []byte) bool {
	for len(p) >= 32 {
		if binary.LittleEndian.Uint64(p)|binary.LittleEndian.Uint64(p[8:])|binary.LittleEndian.Uint64(p[16:])|binary.LittleEndian.Uint64(p[24:]) != 0 {
			return false
		}
		p = p[32:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
