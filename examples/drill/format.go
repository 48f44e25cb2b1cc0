package main

import (
	"fmt"
	"time"
)

// percent formats part/whole as a percentage.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(part)/float64(whole))
}

// formatBytes formats n bytes in binary units: "1.5 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}

// dur formats a duration to the millisecond.
func dur(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

// since formats the time elapsed since t to the millisecond.
func since(t time.Time) string {
	return dur(time.Since(t))
}

// plural formats a count of things: "1 new chunk", "3 new chunks".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
