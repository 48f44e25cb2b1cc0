package report_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

// A replication run's results, as Replicator.ReplicateAll returns them,
// written as the JSON report: durations are Go duration strings, and the
// totals and verdict are derived.
func ExampleWriteJSON() {
	start := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	results := []replicate.Result{{
		VM: "db", Action: replicate.ActionIncremental, RecoveryPoint: "rp-8",
		BytesSent: 64 << 20, BlocksSent: 128, BlocksSkipped: 8064,
		Start: start, Duration: 90 * time.Second, RPO: 6*time.Minute + 30*time.Second,
	}}
	run := report.FromReplicate("shop", results, report.Targets{RPO: 15 * time.Minute})
	if err := report.WriteJSON(os.Stdout, run); err != nil {
		log.Fatal(err)
	}
	// Output:
	// {
	//   "kind": "replicate",
	//   "plan": "shop",
	//   "start": "2026-05-01T10:00:00Z",
	//   "end": "2026-05-01T10:01:30Z",
	//   "targets": {
	//     "rto": "0s",
	//     "rpo": "15m0s"
	//   },
	//   "achieved": {
	//     "rto": "0s",
	//     "rpo": "6m30s"
	//   },
	//   "vms": [
	//     {
	//       "name": "db",
	//       "status": "ok",
	//       "steps": [
	//         {
	//           "name": "copy",
	//           "start": "2026-05-01T10:00:00Z",
	//           "end": "2026-05-01T10:01:30Z",
	//           "status": "succeeded",
	//           "attempts": 1,
	//           "duration": "1m30s"
	//         }
	//       ],
	//       "bytesMoved": 67108864,
	//       "blocksMoved": 128,
	//       "blocksSkipped": 8064,
	//       "retries": 0,
	//       "recoveryPoint": "rp-8",
	//       "notes": [
	//         "action incremental",
	//         "RPO 6m30s at the end"
	//       ]
	//     }
	//   ],
	//   "criticalPath": [
	//     "db/copy"
	//   ],
	//   "duration": "1m30s",
	//   "totals": {
	//     "bytesMoved": 67108864,
	//     "blocksMoved": 128,
	//     "blocksSkipped": 8064,
	//     "retries": 0,
	//     "vms": {
	//       "ok": 1
	//     }
	//   },
	//   "verdict": {
	//     "rto": "none",
	//     "rpo": "pass",
	//     "cleanup": "none",
	//     "overall": "pass"
	//   }
	// }
}

// A drill's report with its clean-up proof, written as JSON and HTML.
func ExampleWrite() {
	run := report.Run{
		Kind: report.KindDrill, Plan: "shop", RunID: "run-42",
		Start: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		End:   time.Date(2026, 5, 1, 10, 4, 0, 0, time.UTC),
	} // in practice: report.FromFailover(failoverReport, targets)
	run = report.WithCleanup(run, report.CleanupProof{Removed: []string{"i-0abc", "vol-0def"}, Verified: true})
	dir, err := os.MkdirTemp("", "reports")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	jsonPath, htmlPath, err := report.Write(dir, run)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(filepath.Base(jsonPath))
	fmt.Println(filepath.Base(htmlPath))
	fmt.Println(run.Verdict().Cleanup)
	// Output:
	// drill-shop-20260501T100000.json
	// drill-shop-20260501T100000.html
	// pass
}
