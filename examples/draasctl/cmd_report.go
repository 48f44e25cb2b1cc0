package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"strings"

	"github.com/opendraas/draas/report"
)

// reportCmd re-renders a report's HTML page beside it and prints its
// summary; its exit code is the report's verdict.
func reportCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "FILE.json"); err != nil {
			return err
		}
		path := args[0]
		if !strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".detail.json") {
			return usagef("%s: name a run's JSON report (FILE.json, not its .detail.json)", path)
		}
		f, err := os.Open(path)
		if err != nil {
			return usagef("report: %v", err)
		}
		run, err := report.ReadJSON(f)
		f.Close()
		if err != nil {
			return usagef("%s: %v: name a JSON report draasctl wrote", path, err)
		}
		var page bytes.Buffer
		if err := report.WriteHTML(&page, run); err != nil {
			return err
		}
		html := strings.TrimSuffix(path, ".json") + ".html"
		if err := writeFileAtomic(html, page.Bytes()); err != nil {
			return err
		}
		if a.g.json {
			if err := report.WriteJSON(a.stdout, run); err != nil {
				return err
			}
		}
		printSummary(a.out, run, false)
		a.say("html: %s", html)
		return verdictError(run)
	}
}
