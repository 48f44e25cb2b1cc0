package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/awssim"
)

// TestQuickDR runs the program as documented: with a simulator of its own,
// and against one reached only through its endpoints, as examples/awssim
// serves it. Either way it backs up, replicates, drills and cleans up in
// seconds, leaving no instance running.
func TestQuickDR(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		var out bytes.Buffer
		start := time.Now()
		require.NoError(t, run(t.Context(), &out, "", ""), out.String())
		assert.Less(t, time.Since(start), time.Minute)
		checkOutput(t, out.String())
	})
	t.Run("endpoints", func(t *testing.T) {
		srv, err := awssim.New(awssim.Options{})
		require.NoError(t, err)
		defer srv.Close()
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), &out, srv.URL, srv.S3URL), out.String())
		checkOutput(t, out.String())
		insts := srv.Instances()
		require.Len(t, insts, 2)
		for _, i := range insts {
			assert.Equal(t, "terminated", i.State, "the drill is cleaned up")
		}
		copies := 0
		for _, s := range srv.Snapshots() {
			if s.Tags[draas.TagRole] == "dr-copy" {
				copies++
			}
		}
		assert.Equal(t, 2, copies, "one DR copy per VM stays")
	})
}

func checkOutput(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"backup     db   point ", "backup     web  point ",
		"replicate  db   full, 16 blocks sent", "replicate  web  full, 16 blocks sent",
		"drill      db   up true on i-", "drill      web  up true on i-",
		"cleanup    2 instances terminated; RTO ",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, " failed", out)
}
