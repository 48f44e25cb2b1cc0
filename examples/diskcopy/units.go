package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseBytes parses a byte count such as "100M", "1.5GiB", "512k" or
// "4096". Suffixes K, M, G and T are binary (powers of 1024) with or without
// a trailing "i" and "B", in either case.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num := strings.TrimRightFunc(t, func(r rune) bool {
		return (r < '0' || r > '9') && r != '.'
	})
	suffix := strings.ToUpper(strings.TrimSpace(t[len(num):]))
	suffix = strings.TrimSuffix(suffix, "B")
	suffix = strings.TrimSuffix(suffix, "I")
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[suffix]
	if mult == 0 {
		return 0, fmt.Errorf("%q has an unknown unit: use a number with an optional K, M, G or T suffix, such as 100M", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a byte count: use a number with an optional K, M, G or T suffix, such as 100M", s)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// formatBytes formats n bytes for people, in binary units: "1.5 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	panic("unreachable")
}

// formatRate formats n bytes processed in d as a rate: "212.4 MiB/s".
func formatRate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatBytes(int64(float64(n)/d.Seconds())) + "/s"
}

// byteFlag is a flag.Value holding a byte count written as parseBytes
// accepts it.
type byteFlag int64

func (b *byteFlag) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteFlag) Set(s string) error {
	v, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteFlag(v)
	return nil
}
