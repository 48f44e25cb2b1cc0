package orchestrate_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/opendraas/draas/orchestrate"
)

// Example fails over one VM in three steps, keeping a journal so that a
// second run (after a crash, say) does nothing twice.
func Example() {
	dir, err := os.MkdirTemp("", "orchestrate-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	journal := orchestrate.NewFileJournal(filepath.Join(dir, "failover.journal"))

	// The steps' outputs, declared once with their types.
	volume := orchestrate.NewKey[string]("volume")
	instance := orchestrate.NewKey[string]("instance")

	var g orchestrate.Graph
	steps := []orchestrate.Step{{
		ID:     "web/volume",
		Labels: map[string]string{"vm": "web"},
		Run: func(ctx context.Context) error {
			// Create an EBS volume from the latest DR copy.
			return orchestrate.Put(ctx, volume, "vol-0abc")
		},
	}, {
		ID:     "web/launch",
		Deps:   []string{"web/volume"},
		Labels: map[string]string{"vm": "web"},
		Run: func(ctx context.Context) error {
			vol, err := orchestrate.Get(ctx, "web/volume", volume)
			if err != nil {
				return err
			}
			fmt.Println("launching an instance with", vol)
			return orchestrate.Put(ctx, instance, "i-0123")
		},
	}, {
		ID:   "web/dns",
		Deps: []string{"web/launch"},
		Run: func(ctx context.Context) error {
			inst, err := orchestrate.Get(ctx, "web/launch", instance)
			if err != nil {
				return err
			}
			fmt.Println("pointing web.example.com at", inst)
			return nil
		},
	}}
	for _, s := range steps {
		if err := g.Add(s); err != nil {
			log.Fatal(err)
		}
	}

	opts := orchestrate.Options{Journal: journal}
	plan, err := orchestrate.Plan(context.Background(), &g, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(plan)

	for range 2 {
		report, err := orchestrate.Run(context.Background(), &g, opts)
		if err != nil {
			log.Fatal(err)
		}
		for _, s := range report.Steps {
			fmt.Printf("%s: %s\n", s.ID, s.Status)
		}
	}
	// Output:
	// WAVE  STEP        AFTER       LABELS
	// 1     web/volume              vm=web
	// 2     web/launch  web/volume  vm=web
	// 3     web/dns     web/launch
	// launching an instance with vol-0abc
	// pointing web.example.com at i-0123
	// web/volume: succeeded
	// web/launch: succeeded
	// web/dns: succeeded
	// web/volume: resumed
	// web/launch: resumed
	// web/dns: resumed
}
