package orchestrate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/opendraas/draas/orchestrate"
)

// benchDAG returns a random graph of n steps (fixed seed), each sleeping
// 2-6 ms and depending on 1 to 3 steps added before it.
func benchDAG(b *testing.B, n int) *orchestrate.Graph {
	rng := rand.New(rand.NewPCG(2025, 1))
	var g orchestrate.Graph
	for i := range n {
		d := time.Duration(2000+rng.IntN(4001)) * time.Microsecond
		s := orchestrate.Step{
			ID:    fmt.Sprintf("s%04d", i),
			Retry: noRetry,
			Run: func(ctx context.Context) error {
				time.Sleep(d)
				return nil
			},
		}
		for range min(i, 1+rng.IntN(3)) {
			s.Deps = append(s.Deps, fmt.Sprintf("s%04d", rng.IntN(i)))
		}
		if err := g.Add(s); err != nil {
			b.Fatal(err)
		}
	}
	return &g
}

// BenchmarkRandomDAG runs a 1,000-step random DAG with 64 steps at a time
// and reports how much longer than its critical path the run took
// (wall/critical-path: 1 means the engine and the parallelism limit added
// nothing).
func BenchmarkRandomDAG(b *testing.B) {
	g := benchDAG(b, 1000)
	var ratio, critical, wall float64
	runs := 0
	for b.Loop() {
		rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Parallelism: 64})
		if err != nil {
			b.Fatal(err)
		}
		ratio += float64(rep.Duration()) / float64(rep.CriticalPathDuration)
		critical += float64(rep.CriticalPathDuration.Milliseconds())
		wall += float64(rep.Duration().Milliseconds())
		runs++
	}
	b.ReportMetric(ratio/float64(runs), "wall/critical-path")
	b.ReportMetric(critical/float64(runs), "critical-ms")
	b.ReportMetric(wall/float64(runs), "wall-ms")
}

// BenchmarkRunNoop measures the engine alone: a 1,000-step random DAG whose
// steps do nothing, with no parallelism limit.
func BenchmarkRunNoop(b *testing.B) {
	steps := randomDAG(3, 1000, 3, true)
	for i := range steps {
		steps[i].Run = func(context.Context) error { return nil }
	}
	g := mustAdd(b, steps...)
	for b.Loop() {
		if _, err := orchestrate.Run(context.Background(), g, orchestrate.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/step")
}
